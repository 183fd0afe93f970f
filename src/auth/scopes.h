// What a caller may do at the device's API, as a bit set: each endpoint needs one scope, and
// a credential (an API key, a Unix socket peer, ...) grants a set of them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::auth {

enum class Scope : uint32_t {
  kInference = 1u << 0,  // KServe inference and model metadata
  kChat = 1u << 1,       // the OpenAI chat API, answered on the device
  kCloud = 1u << 2,      // may have a chat request sent to the cloud LLM
  kAdmin = 1u << 3,      // packages, updates, model control, logging, monitoring data, keys
  kObserve = 1u << 4,    // health, metrics, the repository index
};

using Scopes = uint32_t;
constexpr Scopes kNoScopes = 0;
constexpr Scopes kAllScopes = 0x1f;

constexpr Scopes operator|(Scope a, Scope b) {
  return static_cast<Scopes>(a) | static_cast<Scopes>(b);
}
constexpr Scopes operator|(Scopes a, Scope b) { return a | static_cast<Scopes>(b); }
constexpr bool Has(Scopes set, Scope s) { return (set & static_cast<Scopes>(s)) != 0; }

std::string_view ScopeName(Scope s);
// Throws Error(kInvalidArgument) naming the unknown scope.
Scope ParseScope(std::string_view name);
Scopes ParseScopes(const std::vector<std::string>& names);
std::vector<std::string> ScopeNames(Scopes set);

}  // namespace outpost::auth
