#include "auth/scopes.h"

#include <array>
#include <utility>

#include "core/error.h"

namespace outpost::auth {
namespace {

constexpr std::array<std::pair<Scope, std::string_view>, 5> kNames = {{
    {Scope::kInference, "inference"},
    {Scope::kChat, "chat"},
    {Scope::kCloud, "cloud"},
    {Scope::kAdmin, "admin"},
    {Scope::kObserve, "observe"},
}};

}  // namespace

std::string_view ScopeName(Scope s) {
  for (const auto& [scope, name] : kNames)
    if (scope == s) return name;
  return "unknown";
}

Scope ParseScope(std::string_view name) {
  for (const auto& [scope, n] : kNames)
    if (n == name) return scope;
  Fail(ErrorCode::kInvalidArgument,
       "unknown scope '" + std::string(name) + "' (inference, chat, cloud, admin, observe)");
}

Scopes ParseScopes(const std::vector<std::string>& names) {
  Scopes out = kNoScopes;
  for (const auto& n : names) out |= static_cast<Scopes>(ParseScope(n));
  return out;
}

std::vector<std::string> ScopeNames(Scopes set) {
  std::vector<std::string> out;
  for (const auto& [scope, name] : kNames)
    if (Has(set, scope)) out.emplace_back(name);
  return out;
}

}  // namespace outpost::auth
