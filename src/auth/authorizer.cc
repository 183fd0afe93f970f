#include "auth/authorizer.h"

#include <arpa/inet.h>

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
    d.message = std::string(presented.foreign ? "the credential sent is not an Outpost API key; " : "") +
                "this endpoint needs an API key with " + ScopeWanted(accepted) +
                " (Authorization: Bearer opk_..., or X-Api-Key)";
    return d;
  }
  d.code = ErrorCode::kUnauthenticated;
  if (presented.malformed || !keys) {
    d.message = presented.malformed ? "two different API keys were sent"
                                    : "API keys are not accepted here";
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
