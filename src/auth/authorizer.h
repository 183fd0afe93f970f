// The decision for one request: the credential it presents (if any), what the listener or the
// peer grants without one, and the scope the endpoint needs. Front ends (HTTP, gRPC) extract
// the credential in their own way and convert a refusal to their own status, once.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "auth/api_keys.h"
#include "auth/scopes.h"
#include "core/error.h"

namespace outpost::auth {

// An API key as a request carries it: "Authorization: Bearer <key>" (what OpenAI SDKs
// send) or "X-Api-Key: <key>" (headers or gRPC metadata, either one). A token that is not an
// Outpost key ("opk_...") counts as no credential: OpenAI SDKs insist on sending some key,
// and what a request may do without one it may do with a dummy (and never more).
struct Presented {
  bool present = false;    // an Outpost key was sent, good or bad
  std::string_view key;    // that key
  bool foreign = false;    // a credential that is not an Outpost key was sent
  bool malformed = false;  // two different Outpost keys
};
Presented PresentedKey(std::string_view authorization, std::string_view x_api_key);

struct Decision {
  bool allowed = false;
  ErrorCode code = ErrorCode::kUnauthenticated;  // when refused: 401 or 403
  std::string message;
  std::string caller;         // "opk_<id>" for a key, "anonymous" otherwise
  Scopes scopes = kNoScopes;  // what the caller may do (for decisions inside a handler)
};

// `accepted`: the scopes any of which lets a caller in (health answers `observe` and
// `inference` alike). `open`: the scopes granted with no credential here (a loopback
// listener's defaults, a Unix socket peer's uid). A presented credential is always checked,
// even where none is needed: a client with a wrong or revoked key is told so, not served
// anonymously.
Decision Authorize(const ApiKeyStore* keys, const Presented& presented, Scopes open,
                   Scopes accepted);

// What local processes on the Unix socket may do without a credential, by the uid and gid the
// kernel reports for them (SO_PEERCRED): config {"uid:1000": ["inference"], "group:video":
// ["observe"], "user:app": [...]}. A peer gets the union of its uid's and its gid's scopes.
struct PeerPolicy {
  std::map<uint32_t, Scopes> uids;
  std::map<uint32_t, Scopes> gids;
  Scopes For(uint32_t uid, uint32_t gid) const;
};
// Resolves user and group names now; throws Error(kInvalidArgument) naming the bad entry.
PeerPolicy ParsePeerPolicy(const nlohmann::json& config);

// What TLS clients may do without a key, by the subject (RFC 2253) of a certificate the client
// CA vouched for: config {"CN=camera-app": ["inference"]}.
struct SubjectPolicy {
  std::map<std::string, Scopes, std::less<>> subjects;
  Scopes For(std::string_view subject) const;  // none for "" (no certificate)
};
SubjectPolicy ParseSubjectPolicy(const nlohmann::json& config);  // Error(kInvalidArgument)

// True for addresses only this machine reaches: 127.0.0.0/8, ::1, "localhost".
bool IsLoopbackAddress(std::string_view address);

}  // namespace outpost::auth
