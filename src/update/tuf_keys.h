// Keys as TUF metadata writes them ({"keytype", "scheme", "keyval": {"public"}}) and the
// signature schemes the specification and securesystemslib name: ed25519 (hex public key),
// ecdsa-sha2-nistp256/384 and RSA (PSS or PKCS#1 v1.5 with SHA-256/384/512, PEM public keys),
// all verified with OpenSSL. A key's id is the one the metadata gives it: other implementations
// compute ids over extra fields or with other hashes, and the specification only asks that an id
// names one key within its metadata.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace outpost::tuf {

class Key {
 public:
  // Throws Error(kInvalidArgument) naming `where` when keytype, scheme or keyval.public is not a
  // string. A key of a type or scheme this client does not know parses, and verifies nothing.
  static Key Parse(const nlohmann::json& j, const std::string& where);
  // An Ed25519 key from its 32 raw bytes (what `outpost repo` signs with).
  static Key Ed25519(const std::string& raw_public_key);

  // True only when `signature` (raw bytes) is this key's valid signature of `message`.
  bool Verify(std::string_view message, std::string_view signature) const;

  // Whether this client knows the key's scheme and could read the key for it.
  bool usable() const;
  const std::string& keytype() const { return keytype_; }
  const std::string& scheme() const { return scheme_; }
  const std::string& public_value() const { return public_; }  // as written: hex or PEM
  nlohmann::json ToJson() const;

 private:
  struct Loaded;  // the OpenSSL key, made once on first use
  std::string keytype_, scheme_, public_;
  nlohmann::json extra_;  // other fields of the key object, kept for ToJson
  std::shared_ptr<Loaded> loaded_;
};

}  // namespace outpost::tuf
