#include "tpm/device_key.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <tss2/tss2_esys.h>

#include <cstring>
#include <memory>
#include <utility>

#include "core/atomic_file.h"
#include "tpm/wrapped_object.h"

namespace outpost::tpm {
namespace {

constexpr std::string_view kMagic = "outpost-tpm-key-1\n";

// An unrestricted ECDSA P-256 / SHA-256 signing key that cannot leave the TPM (fixedTPM,
// fixedParent) and that no dictionary-attack lockout can take away (noDA: it has no password).
TPM2B_PUBLIC IdentityKeyTemplate() {
  TPM2B_PUBLIC t =
      Template(TPM2_ALG_ECC, TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_SIGN_ENCRYPT);
  auto& ecc = t.publicArea.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_NULL;
  ecc.scheme.scheme = TPM2_ALG_ECDSA;
  ecc.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  ecc.curveID = TPM2_ECC_NIST_P256;
  ecc.kdf.scheme = TPM2_ALG_NULL;
  return t;
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
  ObjectHandle srk = StorageKey(ctx);
  WrappedObject k;
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    RequirePrivateFile(file);
    k = Parse(ReadFile(file), kMagic, file);
    const auto& p = k.pub.publicArea;
    if (p.type != TPM2_ALG_ECC || p.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
        p.unique.ecc.x.size > 32 || p.unique.ecc.y.size > 32)
      Fail(ErrorCode::kFailedPrecondition, file.string() + " is damaged (not an ECC P-256 key)");
  } else {
    TPM2B_SENSITIVE_CREATE sensitive{};
    k = CreateUnder(ctx, srk, IdentityKeyTemplate(), sensitive, "making the device key");
    WriteFileAtomically(file, Serialize(k, kMagic), 0600);
  }
  ObjectHandle loaded = LoadUnder(ctx, srk, k, file);
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
