#include "tpm/wrapped_object.h"

#include <tss2/tss2_mu.h>

#include <cstring>

#include "core/error.h"
#include "tpm/tpm.h"

namespace outpost::tpm {
namespace {

constexpr TPM2_HANDLE kPersistentSrk = 0x81000001;

TPM2B_PUBLIC SrkTemplate() {
  TPM2B_PUBLIC t = Template(
      TPM2_ALG_ECC, TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT);
  auto& p = t.publicArea;
  auto& ecc = p.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_AES;
  ecc.symmetric.keyBits.aes = 128;
  ecc.symmetric.mode.aes = TPM2_ALG_CFB;
  ecc.scheme.scheme = TPM2_ALG_NULL;
  ecc.curveID = TPM2_ECC_NIST_P256;
  ecc.kdf.scheme = TPM2_ALG_NULL;
  p.unique.ecc.x.size = 32;
  p.unique.ecc.y.size = 32;
  return t;
}

std::string NameOf(ESYS_CONTEXT* ctx, ESYS_TR tr) {
  TPM2B_NAME* name = nullptr;
  Check(Esys_TR_GetName(ctx, tr, &name), "reading the storage key's name");
  std::string out(reinterpret_cast<const char*>(name->name), name->size);
  Esys_Free(name);
  return out;
}

}  // namespace

TPM2B_PUBLIC Template(TPMI_ALG_PUBLIC type, TPMA_OBJECT extra) {
  TPM2B_PUBLIC t{};
  t.publicArea.type = type;
  t.publicArea.nameAlg = TPM2_ALG_SHA256;
  t.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                  TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | extra;
  return t;
}

ObjectHandle::~ObjectHandle() {
  if (tr_ == ESYS_TR_NONE) return;
  if (transient_)
    Esys_FlushContext(ctx_, tr_);
  else
    Esys_TR_Close(ctx_, &tr_);
}

ObjectHandle StorageKey(ESYS_CONTEXT* ctx) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_PUBLIC tmpl = SrkTemplate();
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  ESYS_TR srk = ESYS_TR_NONE;
  TSS2_RC rc = Esys_CreatePrimary(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                  ESYS_TR_NONE, &sensitive, &tmpl, &outside, &pcrs, &srk, nullptr,
                                  nullptr, nullptr, nullptr);
  if (rc == TSS2_RC_SUCCESS) return ObjectHandle(ctx, srk, true);
  if (Esys_TR_FromTPMPublic(ctx, kPersistentSrk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &srk) ==
      TSS2_RC_SUCCESS)
    return ObjectHandle(ctx, srk, false);
  Check(rc, "making the storage key under the owner hierarchy");
  return ObjectHandle(ctx, ESYS_TR_NONE, false);  // not reached
}

WrappedObject CreateUnder(ESYS_CONTEXT* ctx, const ObjectHandle& srk, const TPM2B_PUBLIC& tmpl,
                          const TPM2B_SENSITIVE_CREATE& sensitive, const char* what) {
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  TPM2B_PRIVATE* priv = nullptr;
  TPM2B_PUBLIC* pub = nullptr;
  Check(Esys_Create(ctx, srk.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl,
                    &outside, &pcrs, &priv, &pub, nullptr, nullptr, nullptr),
        what);
  WrappedObject out;
  out.pub = *pub;
  out.priv = *priv;
  Esys_Free(pub);
  Esys_Free(priv);
  const std::string name = NameOf(ctx, srk.get());
  out.parent.size = static_cast<UINT16>(name.size());
  std::memcpy(out.parent.name, name.data(), name.size());
  return out;
}

ObjectHandle LoadUnder(ESYS_CONTEXT* ctx, const ObjectHandle& srk, const WrappedObject& object,
                       const std::filesystem::path& file) {
  if (std::string_view(reinterpret_cast<const char*>(object.parent.name), object.parent.size) !=
      NameOf(ctx, srk.get()))
    Fail(ErrorCode::kFailedPrecondition,
         file.string() +
             " was made by another TPM, or this TPM's owner hierarchy was cleared since");
  ESYS_TR loaded = ESYS_TR_NONE;
  Check(Esys_Load(ctx, srk.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &object.priv,
                  &object.pub, &loaded),
        ("loading " + file.string()).c_str());
  return ObjectHandle(ctx, loaded, true);
}

std::string Serialize(const WrappedObject& k, std::string_view magic) {
  std::string out(magic);
  uint8_t buf[sizeof(TPM2B_NAME) + sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
  size_t off = 0;
  Check(Tss2_MU_TPM2B_NAME_Marshal(&k.parent, buf, sizeof buf, &off), "encoding a TPM object");
  Check(Tss2_MU_TPM2B_PUBLIC_Marshal(&k.pub, buf, sizeof buf, &off), "encoding a TPM object");
  Check(Tss2_MU_TPM2B_PRIVATE_Marshal(&k.priv, buf, sizeof buf, &off), "encoding a TPM object");
  out.append(reinterpret_cast<const char*>(buf), off);
  return out;
}

WrappedObject Parse(const std::string& bytes, std::string_view magic,
                    const std::filesystem::path& file) {
  auto damaged = [&](const std::string& why) {
    Fail(ErrorCode::kFailedPrecondition, file.string() + " is damaged (" + why + ")");
  };
  if (bytes.compare(0, magic.size(), magic) != 0) damaged("not an Outpost TPM file of this kind");
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t off = magic.size();
  WrappedObject k;
  if (Tss2_MU_TPM2B_NAME_Unmarshal(data, bytes.size(), &off, &k.parent) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPM2B_PUBLIC_Unmarshal(data, bytes.size(), &off, &k.pub) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPM2B_PRIVATE_Unmarshal(data, bytes.size(), &off, &k.priv) != TSS2_RC_SUCCESS)
    damaged("truncated or malformed");
  if (off != bytes.size()) damaged("trailing bytes");
  return k;
}

}  // namespace outpost::tpm
