#include "update/tuf_signer.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "core/json_input.h"
#include "package/sha256.h"
#include "update/tuf.h"

namespace outpost::tuf {
namespace {

using json = nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string Pem(EVP_PKEY* key, bool secret) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) Fail(ErrorCode::kInternal, "out of memory");
  int ok = secret ? PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr)
                  : PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out = ok == 1 ? std::string(data, static_cast<size_t>(n)) : std::string();
  BIO_free(bio);
  if (out.empty()) Fail(ErrorCode::kInternal, "cannot encode a key");
  return out;
}

json EcdsaKeyJson(const std::string& public_pem) {
  return {{"keytype", "ecdsa"}, {"scheme", kEcdsaP256}, {"keyval", {{"public", public_pem}}}};
}

std::string IdOf(const json& key_json) { return Sha256Hex(CanonicalJson(key_json)); }

json ReadKeyFile(const std::filesystem::path& path) {
  json j = ParseJson(ReadFile(path), JsonLimits::Document(1u << 20), path.string());
  if (!j.is_object()) Fail(ErrorCode::kInvalidArgument, path.string() + ": not a key file");
  return j;
}

}  // namespace

struct Signer::Ecdsa {
  Pkey key;
};

Signer Signer::FromEd25519(const SigningKey& key) {
  Signer s;
  s.name_ = key.pub.name;
  s.key_json_ = KeyJson(key.pub.public_key);
  s.keyid_ = KeyIdOf(key.pub.public_key);
  s.ed25519_ = std::make_shared<SigningKey>(key);
  return s;
}

Signer Signer::GenerateEcdsa(const std::string& name) {
  Signer s;
  s.name_ = name;
  s.ecdsa_ = std::make_shared<Ecdsa>();
  s.ecdsa_->key.reset(EVP_EC_gen("P-256"));
  if (!s.ecdsa_->key) Fail(ErrorCode::kInternal, "cannot generate an ECDSA key");
  s.key_json_ = EcdsaKeyJson(Pem(s.ecdsa_->key.get(), false));
  s.keyid_ = IdOf(s.key_json_);
  return s;
}

Signer Signer::Load(const std::filesystem::path& key_file) {
  RequirePrivateFile(key_file);
  json j = ReadKeyFile(key_file);
  if (j.value("type", "ed25519") == "ed25519") return FromEd25519(LoadSigningKey(key_file));
  const JsonFields f(j, key_file.string());
  if (f.Require<std::string>("type") != kEcdsaP256)
    f.Fail("type", "must be ed25519 or " + std::string(kEcdsaP256));
  const std::string secret = f.Require<std::string>("secret");
  BIO* bio = BIO_new_mem_buf(secret.data(), static_cast<int>(secret.size()));
  Signer s;
  s.name_ = f.Get("name", "");
  s.ecdsa_ = std::make_shared<Ecdsa>();
  s.ecdsa_->key.reset(bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr);
  BIO_free(bio);
  char group[32] = {};
  size_t len = 0;
  if (!s.ecdsa_->key || EVP_PKEY_get_base_id(s.ecdsa_->key.get()) != EVP_PKEY_EC ||
      EVP_PKEY_get_group_name(s.ecdsa_->key.get(), group, sizeof group, &len) != 1 ||
      std::string(group, len) != "prime256v1")
    Fail(ErrorCode::kInvalidArgument, key_file.string() + ": not an ECDSA P-256 secret key");
  s.key_json_ = EcdsaKeyJson(Pem(s.ecdsa_->key.get(), false));
  s.keyid_ = IdOf(s.key_json_);
  if (f.Get("keyid", s.keyid_) != s.keyid_)
    Fail(ErrorCode::kInvalidArgument, key_file.string() + ": keyid does not match the key");
  return s;
}

void Signer::Save(const std::filesystem::path& key_path,
                  const std::filesystem::path& pub_path) const {
  if (ed25519_) {
    SaveSigningKey(*ed25519_, key_path, pub_path);
    return;
  }
  for (const auto& p : {key_path, pub_path})
    if (std::filesystem::exists(p))
      Fail(ErrorCode::kFailedPrecondition, p.string() + " exists; not overwriting a key");
  json pub = {{"type", kEcdsaP256},
              {"keyid", keyid_},
              {"public", key_json_["keyval"]["public"]},
              {"name", name_}};
  json secret = pub;
  secret["secret"] = Pem(ecdsa_->key.get(), true);
  WriteFileAtomically(key_path, secret.dump(2) + "\n", 0600);
  WriteFileAtomically(pub_path, pub.dump(2) + "\n", 0644);
}

std::string Signer::Sign(std::string_view message) const {
  if (ed25519_) return outpost::Sign(*ed25519_, message);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  std::string sig;
  bool ok =
      ctx && EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, ecdsa_->key.get()) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok =
        EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) Fail(ErrorCode::kInternal, "ECDSA signing failed");
  return sig;
}

std::pair<std::string, json> LoadTufPublicKey(const std::filesystem::path& path) {
  json j = ReadKeyFile(path);
  if (j.value("type", "ed25519") == "ed25519") {
    PublicKey k = path.extension() == ".pub" ? LoadPublicKey(path) : LoadSigningKey(path).pub;
    return {KeyIdOf(k.public_key), KeyJson(k.public_key)};
  }
  if (path.extension() != ".pub") {
    Signer s = Signer::Load(path);
    return {s.keyid(), s.key_json()};
  }
  const JsonFields f(j, path.string());
  if (f.Require<std::string>("type") != kEcdsaP256)
    f.Fail("type", "must be ed25519 or " + std::string(kEcdsaP256));
  json key = EcdsaKeyJson(f.Require<std::string>("public"));
  if (!Key::Parse(key, path.string()).usable())
    Fail(ErrorCode::kInvalidArgument, path.string() + ": not an ECDSA P-256 public key");
  return {IdOf(key), key};
}

json SignEnvelope(const json& signed_part, const std::vector<const Signer*>& signers) {
  const std::string canonical = CanonicalJson(signed_part);
  json sigs = json::array();
  for (const auto* s : signers)
    sigs.push_back({{"keyid", s->keyid()}, {"sig", ToHex(s->Sign(canonical))}});
  return {{"signed", signed_part}, {"signatures", sigs}};
}

}  // namespace outpost::tuf
