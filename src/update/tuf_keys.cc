#include "update/tuf_keys.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "core/error.h"
#include "package/keys.h"

namespace outpost::tuf {
namespace {

using json = nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

struct Scheme {
  const char* name;
  int type;           // EVP_PKEY_ED25519, EVP_PKEY_EC or EVP_PKEY_RSA
  const char* group;  // the curve an ecdsa scheme names
  const EVP_MD* (*md)();
  int padding;  // RSA only
};

const EVP_MD* NoDigest() { return nullptr; }

constexpr Scheme kSchemes[] = {
    {"ed25519", EVP_PKEY_ED25519, nullptr, NoDigest, 0},
    {"ecdsa-sha2-nistp256", EVP_PKEY_EC, "prime256v1", EVP_sha256, 0},
    {"ecdsa-sha2-nistp384", EVP_PKEY_EC, "secp384r1", EVP_sha384, 0},
    {"rsassa-pss-sha256", EVP_PKEY_RSA, nullptr, EVP_sha256, RSA_PKCS1_PSS_PADDING},
    {"rsassa-pss-sha384", EVP_PKEY_RSA, nullptr, EVP_sha384, RSA_PKCS1_PSS_PADDING},
    {"rsassa-pss-sha512", EVP_PKEY_RSA, nullptr, EVP_sha512, RSA_PKCS1_PSS_PADDING},
    {"rsa-pkcs1v15-sha256", EVP_PKEY_RSA, nullptr, EVP_sha256, RSA_PKCS1_PADDING},
    {"rsa-pkcs1v15-sha384", EVP_PKEY_RSA, nullptr, EVP_sha384, RSA_PKCS1_PADDING},
    {"rsa-pkcs1v15-sha512", EVP_PKEY_RSA, nullptr, EVP_sha512, RSA_PKCS1_PADDING},
};

// The key types each scheme may be written with ("ecdsa" and its older long spelling).
bool TypeFits(const std::string& keytype, int type) {
  switch (type) {
    case EVP_PKEY_ED25519:
      return keytype == "ed25519";
    case EVP_PKEY_EC:
      return keytype == "ecdsa" || keytype == "ecdsa-sha2-nistp256" ||
             keytype == "ecdsa-sha2-nistp384";
    default:
      return keytype == "rsa";
  }
}

std::unique_ptr<EVP_PKEY, PkeyFree> FromPem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return nullptr;
  EVP_PKEY* k = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return std::unique_ptr<EVP_PKEY, PkeyFree>(k);
}

}  // namespace

struct Key::Loaded {
  const Scheme* scheme = nullptr;
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey;
};

Key Key::Parse(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("keytype") || !j["keytype"].is_string() ||
      !j.contains("scheme") || !j["scheme"].is_string() || !j.contains("keyval") ||
      !j["keyval"].is_object() || !j["keyval"].contains("public") ||
      !j["keyval"]["public"].is_string())
    Fail(ErrorCode::kInvalidArgument,
         where + ": a key needs keytype, scheme and keyval.public strings");
  Key k;
  k.keytype_ = j["keytype"].get<std::string>();
  k.scheme_ = j["scheme"].get<std::string>();
  k.public_ = j["keyval"]["public"].get<std::string>();
  k.extra_ = j;
  k.loaded_ = std::make_shared<Loaded>();
  for (const Scheme& s : kSchemes) {
    if (k.scheme_ != s.name || !TypeFits(k.keytype_, s.type)) continue;
    std::unique_ptr<EVP_PKEY, PkeyFree> pkey;
    if (s.type == EVP_PKEY_ED25519) {
      std::string raw;
      try {
        raw = FromHex(k.public_, "public key");
      } catch (const Error&) {
      }
      if (raw.size() == 32)
        pkey.reset(EVP_PKEY_new_raw_public_key(
            EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), 32));
    } else {
      pkey = FromPem(k.public_);
    }
    if (!pkey || EVP_PKEY_get_base_id(pkey.get()) != s.type) break;
    if (s.group) {
      char group[64] = {};
      size_t len = 0;
      if (EVP_PKEY_get_group_name(pkey.get(), group, sizeof group, &len) != 1 ||
          std::string_view(group, len) != s.group)
        break;  // a P-384 key under a P-256 scheme verifies nothing
    }
    k.loaded_->scheme = &s;
    k.loaded_->pkey = std::move(pkey);
    break;
  }
  return k;
}

Key Key::Ed25519(const std::string& raw_public_key) {
  return Parse({{"keytype", "ed25519"},
                {"scheme", "ed25519"},
                {"keyval", {{"public", ToHex(raw_public_key)}}}},
               "key");
}

bool Key::Verify(std::string_view message, std::string_view signature) const {
  if (!loaded_ || !loaded_->pkey || signature.empty()) return false;
  const Scheme& s = *loaded_->scheme;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return false;
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = EVP_DigestVerifyInit(ctx, &pctx, s.md(), nullptr, loaded_->pkey.get()) == 1;
  if (ok && s.padding != 0) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, s.padding) == 1;
    // Any salt length, as securesystemslib verifies (signers use the digest's length or the
    // maximum).
    if (ok && s.padding == RSA_PKCS1_PSS_PADDING)
      ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, s.md()) == 1;
  }
  ok = ok && EVP_DigestVerify(
                 ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                 reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

bool Key::usable() const { return loaded_ && loaded_->pkey; }

json Key::ToJson() const { return extra_; }

}  // namespace outpost::tuf
