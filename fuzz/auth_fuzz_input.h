// The auth fuzz input (shared by fuzz/auth_fuzz.cc and the corpus replay test): the bytes of
// an Authorization header and an X-Api-Key header (split at the first newline), as any client
// may send them. The check must not crash, and must never admit a caller to a scope nothing
// grants without a credential: no key the input can hold is valid (the store's one key has a
// secret the fuzzer does not know).
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "auth/api_keys.h"
#include "auth/authorizer.h"

namespace outpost_fuzz {

inline const outpost::auth::ApiKeyStore& FuzzKeyStore() {
  static const outpost::auth::ApiKeyStore* store = [] {
    char tmpl[] = "/tmp/outpost-auth-fuzz-XXXXXX";
    auto* s = new outpost::auth::ApiKeyStore(::mkdtemp(tmpl));
    s->Create("fuzz", outpost::auth::kAllScopes);
    return s;
  }();
  return *store;
}

inline void RunAuthInput(const uint8_t* data, size_t size) {
  using namespace outpost::auth;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  const std::string_view authorization = in.substr(0, nl);
  const std::string_view x_api_key = nl == std::string_view::npos ? "" : in.substr(nl + 1);
  const Presented p = PresentedKey(authorization, x_api_key);
  const Scopes open = static_cast<Scopes>(Scope::kObserve);
  if (Authorize(&FuzzKeyStore(), p, open, static_cast<Scopes>(Scope::kAdmin)).allowed)
    __builtin_trap();
  const Decision d = Authorize(&FuzzKeyStore(), p, open, static_cast<Scopes>(Scope::kObserve));
  // Observe is open: only a credential that claims to be a key (and is not valid) is refused.
  if (d.allowed == p.present) __builtin_trap();
  (void)KeyIdOf(authorization);
}

}  // namespace outpost_fuzz
