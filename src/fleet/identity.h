// Who is calling the fleet server. Operators present a bearer token (stored only as its
// SHA-256) with a scope; devices sign every request with the Ed25519 key they enrolled with.
//
// A device request carries X-Outpost-Device, X-Outpost-Time (Unix milliseconds) and
// X-Outpost-Signature (hex Ed25519) over SigningString(): method, path with query, device id,
// time and the body's SHA-256. The server accepts a time within kClockSkew of its own and
// strictly after the last one it accepted from that device, so a replayed request (same
// time) or a reordered one is refused; a device sends its requests one after another.
// Signed requests rather than mutual TLS: they pass through any load balancer or proxy
// unchanged, and revocation is one row in the shared database, effective at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace outpost::fleet {

enum class Scope { kRead = 0, kWrite = 1, kAdmin = 2 };
std::string_view ScopeName(Scope s);
Scope ParseScope(std::string_view s);  // throws Error(kInvalidArgument)

constexpr std::chrono::minutes kClockSkew{5};

// A random secret with a readable prefix ("opt_" operator token, "oet_" enrollment token).
std::string NewSecret(std::string_view prefix);
std::string NewId(std::string_view prefix);  // shorter, not secret
std::string HashSecret(std::string_view secret);

std::string SigningString(std::string_view method, std::string_view path_and_query,
                          std::string_view device_id, int64_t time_ms,
                          std::string_view body_sha256_hex);
// What a device signs to enroll: proof that it holds the private key it presents.
std::string EnrollmentSigningString(std::string_view token, std::string_view public_key_hex);

}  // namespace outpost::fleet
