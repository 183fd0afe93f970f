#include "tpm/device_key.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include <cstring>
#include <memory>
#include <utility>

#include "core/atomic_file.h"

namespace outpost::tpm {
namespace {

constexpr std::string_view kMagic = "outpost-tpm-key-1\n";
// Where provisioning tools conventionally keep the storage primary key.
constexpr TPM2_HANDLE kPersistentSrk = 0x81000001;

void ZeroCoordinates(TPMS_ECC_POINT& p) {
  p.x.size = 32;
  p.y.size = 32;
}

// The TCG's ECC P-256 storage key template: the same template under the same owner seed
// gives the same key, so it is made again at each start rather than kept.
TPM2B_PUBLIC SrkTemplate() {
  TPM2B_PUBLIC t{};
  auto& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                       TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  auto& ecc = p.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_AES;
  ecc.symmetric.keyBits.aes = 128;
  ecc.symmetric.mode.aes = TPM2_ALG_CFB;
  ecc.scheme.scheme = TPM2_ALG_NULL;
  ecc.curveID = TPM2_ECC_NIST_P256;
  ecc.kdf.scheme = TPM2_ALG_NULL;
  ZeroCoordinates(p.unique.ecc);
  return t;
}

// An unrestricted ECDSA P-256 / SHA-256 signing key that cannot leave the TPM (fixedTPM,
// fixedParent) and that no dictionary-attack lockout can take away (noDA: it has no password).
TPM2B_PUBLIC IdentityKeyTemplate() {
  TPM2B_PUBLIC t{};
  auto& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                       TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT;
  auto& ecc = p.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_NULL;
  ecc.scheme.scheme = TPM2_ALG_ECDSA;
  ecc.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  ecc.curveID = TPM2_ECC_NIST_P256;
  ecc.kdf.scheme = TPM2_ALG_NULL;
  return t;
}

// Flushes a transient object (or forgets a persistent one's ESAPI handle) unless released.
class Handle {
 public:
  Handle(ESYS_CONTEXT* ctx, ESYS_TR tr, bool transient)
      : ctx_(ctx), tr_(tr), transient_(transient) {}
  ~Handle() {
    if (tr_ == ESYS_TR_NONE) return;
    if (transient_)
      Esys_FlushContext(ctx_, tr_);
    else
      Esys_TR_Close(ctx_, &tr_);
  }
  Handle(const Handle&) = delete;
  ESYS_TR get() const { return tr_; }
  bool transient() const { return transient_; }
  ESYS_TR release() { return std::exchange(tr_, ESYS_TR_NONE); }

 private:
  ESYS_CONTEXT* ctx_;
  ESYS_TR tr_;
  bool transient_;
};

// The storage primary key: made from the template under the owner hierarchy, or, where the
// owner has set a password we do not have, the one provisioned at the conventional handle.
Handle StorageKey(ESYS_CONTEXT* ctx) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_PUBLIC tmpl = SrkTemplate();
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  ESYS_TR srk = ESYS_TR_NONE;
  TSS2_RC rc = Esys_CreatePrimary(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                  ESYS_TR_NONE, &sensitive, &tmpl, &outside, &pcrs, &srk, nullptr,
                                  nullptr, nullptr, nullptr);
  if (rc == TSS2_RC_SUCCESS) return Handle(ctx, srk, true);
  if (Esys_TR_FromTPMPublic(ctx, kPersistentSrk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &srk) ==
      TSS2_RC_SUCCESS)
    return Handle(ctx, srk, false);
  Check(rc, "making the storage key under the owner hierarchy");
  return Handle(ctx, ESYS_TR_NONE, false);  // not reached
}

std::string NameOf(ESYS_CONTEXT* ctx, ESYS_TR tr) {
  TPM2B_NAME* name = nullptr;
  Check(Esys_TR_GetName(ctx, tr, &name), "reading the storage key's name");
  std::string out(reinterpret_cast<const char*>(name->name), name->size);
  Esys_Free(name);
  return out;
}

struct KeyFile {
  TPM2B_NAME parent{};
  TPM2B_PUBLIC pub{};
  TPM2B_PRIVATE priv{};
};

std::string Serialize(const KeyFile& k) {
  std::string out(kMagic);
  uint8_t buf[sizeof(TPM2B_NAME) + sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
  size_t off = 0;
  Check(Tss2_MU_TPM2B_NAME_Marshal(&k.parent, buf, sizeof buf, &off), "encoding the key file");
  Check(Tss2_MU_TPM2B_PUBLIC_Marshal(&k.pub, buf, sizeof buf, &off), "encoding the key file");
  Check(Tss2_MU_TPM2B_PRIVATE_Marshal(&k.priv, buf, sizeof buf, &off), "encoding the key file");
  out.append(reinterpret_cast<const char*>(buf), off);
  return out;
}

KeyFile Parse(const std::string& bytes, const std::filesystem::path& file) {
  auto damaged = [&](const std::string& why) {
    Fail(ErrorCode::kFailedPrecondition,
         "the device key file " + file.string() + " is damaged (" + why + ")");
  };
  if (bytes.compare(0, kMagic.size(), kMagic) != 0) damaged("not an Outpost TPM key file");
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t off = kMagic.size();
  KeyFile k;
  if (Tss2_MU_TPM2B_NAME_Unmarshal(data, bytes.size(), &off, &k.parent) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPM2B_PUBLIC_Unmarshal(data, bytes.size(), &off, &k.pub) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPM2B_PRIVATE_Unmarshal(data, bytes.size(), &off, &k.priv) != TSS2_RC_SUCCESS)
    damaged("truncated or malformed");
  if (off != bytes.size()) damaged("trailing bytes");
  const auto& p = k.pub.publicArea;
  if (p.type != TPM2_ALG_ECC || p.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
      p.unique.ecc.x.size > 32 || p.unique.ecc.y.size > 32)
    damaged("not an ECC P-256 key");
  return k;
}

// The public point as DER SubjectPublicKeyInfo.
std::string PublicKeyDer(const TPM2B_PUBLIC& pub) {
  const auto& q = pub.publicArea.unique.ecc;
  unsigned char point[65] = {0x04};
  std::memcpy(point + 1 + 32 - q.x.size, q.x.buffer, q.x.size);
  std::memcpy(point + 33 + 32 - q.y.size, q.y.buffer, q.y.size);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point);
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                                 OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0)
    Fail(ErrorCode::kInternal, "TPM: the device key's public point is not on P-256");
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(raw, EVP_PKEY_free);
  const int len = i2d_PUBKEY(pkey.get(), nullptr);
  std::string der(static_cast<size_t>(len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_PUBKEY(pkey.get(), &out);
  return der;
}

}  // namespace

DeviceKey DeviceKey::LoadOrCreate(Tpm& tpm, const std::filesystem::path& file) {
  ESYS_CONTEXT* ctx = tpm.esys();
  Handle srk = StorageKey(ctx);
  const std::string srk_name = NameOf(ctx, srk.get());
  KeyFile k;
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    RequirePrivateFile(file);
    k = Parse(ReadFile(file), file);
    if (std::string_view(reinterpret_cast<const char*>(k.parent.name), k.parent.size) != srk_name)
      Fail(ErrorCode::kFailedPrecondition,
           "the device key in " + file.string() +
               " was made by another TPM, or this TPM's owner hierarchy was cleared since");
  } else {
    TPM2B_SENSITIVE_CREATE sensitive{};
    TPM2B_PUBLIC tmpl = IdentityKeyTemplate();
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION pcrs{};
    TPM2B_PRIVATE* priv = nullptr;
    TPM2B_PUBLIC* pub = nullptr;
    Check(Esys_Create(ctx, srk.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                      &tmpl, &outside, &pcrs, &priv, &pub, nullptr, nullptr, nullptr),
          "making the device key");
    k.pub = *pub;
    k.priv = *priv;
    Esys_Free(pub);
    Esys_Free(priv);
    k.parent.size = static_cast<UINT16>(srk_name.size());
    std::memcpy(k.parent.name, srk_name.data(), srk_name.size());
    WriteFileAtomically(file, Serialize(k), 0600);
  }
  ESYS_TR key = ESYS_TR_NONE;
  Check(Esys_Load(ctx, srk.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &k.priv, &k.pub,
                  &key),
        ("loading the device key in " + file.string()).c_str());
  Handle loaded(ctx, key, true);
  std::string der = PublicKeyDer(k.pub);
  const bool srk_transient = srk.transient();
  return DeviceKey(tpm, srk.release(), loaded.release(), srk_transient, std::move(der));
}

DeviceKey::DeviceKey(DeviceKey&& o) noexcept
    : tpm_(o.tpm_),
      srk_(std::exchange(o.srk_, ESYS_TR_NONE)),
      key_(std::exchange(o.key_, ESYS_TR_NONE)),
      srk_transient_(o.srk_transient_),
      public_der_(std::move(o.public_der_)) {}

DeviceKey::~DeviceKey() {
  ESYS_CONTEXT* ctx = tpm_->esys();
  if (key_ != ESYS_TR_NONE) Esys_FlushContext(ctx, key_);
  if (srk_ != ESYS_TR_NONE) {
    if (srk_transient_)
      Esys_FlushContext(ctx, srk_);
    else
      Esys_TR_Close(ctx, &srk_);
  }
}

std::string DeviceKey::Sign(std::string_view message) const {
  TPM2B_DIGEST digest{};
  digest.size = SHA256_DIGEST_LENGTH;
  SHA256(reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest.buffer);
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_ECDSA;
  scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  // An unrestricted key signs any digest; the ticket proves nothing and is empty.
  TPMT_TK_HASHCHECK ticket{};
  ticket.tag = TPM2_ST_HASHCHECK;
  ticket.hierarchy = TPM2_RH_NULL;
  TPMT_SIGNATURE* sig = nullptr;
  Check(Esys_Sign(tpm_->esys(), key_, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digest,
                  &scheme, &ticket, &sig),
        "signing with the device key");
  std::unique_ptr<TPMT_SIGNATURE, decltype(&Esys_Free)> owned(sig, Esys_Free);
  const auto& r = sig->signature.ecdsa.signatureR;
  const auto& s = sig->signature.ecdsa.signatureS;
  ECDSA_SIG* ecdsa = ECDSA_SIG_new();
  ECDSA_SIG_set0(ecdsa, BN_bin2bn(r.buffer, r.size, nullptr), BN_bin2bn(s.buffer, s.size, nullptr));
  const int len = i2d_ECDSA_SIG(ecdsa, nullptr);
  std::string der(static_cast<size_t>(len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_ECDSA_SIG(ecdsa, &out);
  ECDSA_SIG_free(ecdsa);
  return der;
}

}  // namespace outpost::tpm
