#include "auth/authorizer.h"

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>

#include <charconv>
#include <functional>
#include <vector>

#include "core/names.h"

namespace outpost::auth {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string ScopeWanted(Scopes accepted) {
  const auto names = ScopeNames(accepted);
  if (names.size() == 1) return "the '" + names[0] + "' scope";
  std::string out = "one of the scopes";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", '" : " '") + names[i] + "'";
  return out;
}

// Calls `each(key, scopes)` for an object of scope lists ({"<key>": ["inference", ...]});
// throws Error(kInvalidArgument) opening with `context`, saying `shape` is expected.
void ForEachScopeList(const nlohmann::json& config, const std::string& context,
                      const std::string& shape,
                      const std::function<void(const std::string&, Scopes)>& each) {
  if (config.is_null()) return;
  auto bad = [&](const std::string& message) {
    Fail(ErrorCode::kInvalidArgument, context + ": " + message);
  };
  if (!config.is_object()) bad("expected " + shape);
  for (const auto& [key, scopes] : config.items()) {
    if (!scopes.is_array()) bad("'" + key + "' must list scopes");
    std::vector<std::string> names;
    for (const auto& s : scopes) {
      if (!s.is_string()) bad("'" + key + "' must list scope names");
      names.push_back(s.get<std::string>());
    }
    each(key, ParseScopes(names));
  }
}

}  // namespace

Presented PresentedKey(std::string_view authorization, std::string_view x_api_key) {
  Presented p;
  std::string_view bearer;
  authorization = Trim(authorization);
  if (!authorization.empty()) {
    const size_t space = authorization.find(' ');
    if (space != std::string_view::npos && AsciiLower(authorization.substr(0, space)) == "bearer")
      bearer = Trim(authorization.substr(space + 1));
    else
      p.foreign = true;  // Basic, or some other scheme
  }
  x_api_key = Trim(x_api_key);
  for (std::string_view candidate : {bearer, x_api_key}) {
    if (candidate.empty()) continue;
    if (!IsApiKeyShaped(candidate)) {
      p.foreign = true;
      continue;
    }
    if (p.present && p.key != candidate) p.malformed = true;
    p.present = true;
    p.key = candidate;
  }
  return p;
}

Decision Authorize(const ApiKeyStore* keys, const Presented& presented, Scopes open,
                   Scopes accepted) {
  Decision d;
  if (!presented.present) {
    d.caller = "anonymous";
    d.scopes = open;
    if ((open & accepted) != 0) {
      d.allowed = true;
      return d;
    }
    d.code = ErrorCode::kUnauthenticated;
    d.message =
        std::string(presented.foreign ? "the credential sent is not an Outpost API key; " : "") +
        "this endpoint needs an API key with " + ScopeWanted(accepted) +
        " (Authorization: Bearer opk_..., or X-Api-Key)";
    return d;
  }
  d.code = ErrorCode::kUnauthenticated;
  if (presented.malformed || !keys) {
    d.message =
        presented.malformed ? "two different API keys were sent" : "API keys are not accepted here";
    return d;
  }
  const KeyMatch m = keys->Verify(presented.key);
  switch (m.check) {
    case KeyCheck::kMalformed:
    case KeyCheck::kUnknown:
      d.message = "the API key is not valid";
      return d;
    case KeyCheck::kRevoked:
      d.message = "the API key opk_" + m.id + " has been revoked";
      return d;
    case KeyCheck::kValid:
      break;
  }
  d.caller = "opk_" + m.id;
  d.scopes = m.scopes;
  if ((m.scopes & accepted) == 0) {
    d.code = ErrorCode::kPermissionDenied;
    d.message = "the API key " + d.caller + " lacks " + ScopeWanted(accepted);
    return d;
  }
  d.allowed = true;
  return d;
}

Scopes PeerPolicy::For(uint32_t uid, uint32_t gid) const {
  Scopes out = kNoScopes;
  if (auto it = uids.find(uid); it != uids.end()) out |= it->second;
  if (auto it = gids.find(gid); it != gids.end()) out |= it->second;
  return out;
}

PeerPolicy ParsePeerPolicy(const nlohmann::json& config) {
  PeerPolicy out;
  auto bad = [](const std::string& message) {
    Fail(ErrorCode::kInvalidArgument, "unix_socket_peers: " + message);
  };
  ForEachScopeList(config, "unix_socket_peers",
                   "{\"uid:N\" | \"gid:N\" | \"user:NAME\" | \"group:NAME\": [scopes]}",
                   [&](const std::string& who, Scopes granted) {
                     const size_t colon = who.find(':');
                     const std::string kind = who.substr(0, colon),
                                       name =
                                           colon == std::string::npos ? "" : who.substr(colon + 1);
                     uint32_t id = 0;
                     if (kind == "uid" || kind == "gid") {
                       auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), id);
                       if (ec != std::errc() || end != name.data() + name.size() || name.empty())
                         bad("'" + who + "' is not a number");
                     } else if (kind == "user") {
                       const passwd* pw = ::getpwnam(name.c_str());
                       if (!pw) bad("no user '" + name + "' on this machine");
                       id = pw->pw_uid;
                     } else if (kind == "group") {
                       const group* gr = ::getgrnam(name.c_str());
                       if (!gr) bad("no group '" + name + "' on this machine");
                       id = gr->gr_gid;
                     } else {
                       bad("'" + who + "' must start with uid:, gid:, user: or group:");
                     }
                     auto& map = kind == "uid" || kind == "user" ? out.uids : out.gids;
                     map[id] |= granted;
                   });
  return out;
}

Scopes SubjectPolicy::For(std::string_view subject) const {
  if (subject.empty()) return kNoScopes;
  auto it = subjects.find(subject);
  return it == subjects.end() ? kNoScopes : it->second;
}

SubjectPolicy ParseSubjectPolicy(const nlohmann::json& config) {
  SubjectPolicy out;
  ForEachScopeList(
      config, "tls_client_subjects", "{\"<subject>\": [scopes]}",
      [&](const std::string& subject, Scopes granted) { out.subjects[subject] = granted; });
  return out;
}

bool IsLoopbackAddress(std::string_view address) {
  if (address.size() > 2 && address.front() == '[' && address.back() == ']')
    address = address.substr(1, address.size() - 2);
  if (AsciiLower(address) == "localhost") return true;
  const std::string a(address);
  in_addr v4{};
  if (::inet_pton(AF_INET, a.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, a.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

}  // namespace outpost::auth
