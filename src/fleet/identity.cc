#include "fleet/identity.h"

#include <sodium.h>

#include "core/error.h"
#include "package/keys.h"
#include "package/sha256.h"

namespace outpost::fleet {

std::string_view ScopeName(Scope s) {
  switch (s) {
    case Scope::kRead:
      return "read";
    case Scope::kWrite:
      return "write";
    case Scope::kAdmin:
      return "admin";
  }
  return "read";
}

Scope ParseScope(std::string_view s) {
  if (s == "read") return Scope::kRead;
  if (s == "write") return Scope::kWrite;
  if (s == "admin") return Scope::kAdmin;
  Fail(ErrorCode::kInvalidArgument,
       "scope must be read, write or admin, not '" + std::string(s) + "'");
}

namespace {
std::string RandomHex(size_t bytes) {
  if (sodium_init() < 0) Fail(ErrorCode::kInternal, "libsodium failed to initialise");
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  return ToHex(raw);
}
}  // namespace

std::string NewSecret(std::string_view prefix) { return std::string(prefix) + RandomHex(32); }
std::string NewId(std::string_view prefix) { return std::string(prefix) + RandomHex(8); }
std::string HashSecret(std::string_view secret) { return Sha256Hex(secret); }

std::string SigningString(std::string_view method, std::string_view path_and_query,
                          std::string_view device_id, int64_t time_ms,
                          std::string_view body_sha256_hex) {
  std::string s = "outpost-fleet-request-v1\n";
  s.append(method).append("\n").append(path_and_query).append("\n").append(device_id);
  s.append("\n").append(std::to_string(time_ms)).append("\n").append(body_sha256_hex);
  return s;
}

std::string EnrollmentSigningString(std::string_view token, std::string_view public_key_hex) {
  std::string s = "outpost-fleet-enroll-v1\n";
  s.append(token).append("\n").append(public_key_hex);
  return s;
}

}  // namespace outpost::fleet
