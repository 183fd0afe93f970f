// The TUF metadata fuzz input (shared by fuzz/tuf_fuzz.cc and the corpus replay test), which
// arrives from the network: the first byte picks how the rest is used. 0-3: raw bytes as a new
// root, a timestamp, the trusted root itself (keys of every type, PEM included), or targets
// metadata (envelope, signature and field parsing a server controls). 4-7: the rest is taken as
// the *signed* part and signed here with the role's real key, so that the field parsers behind
// the signature check (delegations, path patterns, hashed bins: reachable only by a key holder,
// or a bug) are fuzzed too. 8: the rest as JSON through the canonical encoder, which must be
// stable (encoding what it encoded and parsed back gives the same bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_input.h"
#include "json_nesting.h"
#include "update/tuf.h"

namespace outpost_fuzz {

using outpost::tuf::Clock;
using json = nlohmann::json;

struct Keys {
  outpost::SigningKey root = outpost::GenerateSigningKey("root");
  outpost::SigningKey timestamp = outpost::GenerateSigningKey("timestamp");
  std::string root_bytes;
  Keys() {
    json k = json::object();
    auto role = [&](const outpost::SigningKey& key) {
      std::string id = outpost::tuf::KeyIdOf(key.pub.public_key);
      k[id] = outpost::tuf::KeyJson(key.pub.public_key);
      return json{{"keyids", {id}}, {"threshold", 1}};
    };
    json roles = {{"root", role(root)},
                  {"targets", role(root)},
                  {"snapshot", role(root)},
                  {"timestamp", role(timestamp)}};
    json signed_root = {{"_type", "root"},
                        {"spec_version", "1.0.31"},
                        {"version", 1},
                        {"expires", "2100-01-01T00:00:00Z"},
                        {"consistent_snapshot", true},
                        {"keys", k},
                        {"roles", roles}};
    root_bytes = outpost::tuf::SignEnvelope(signed_root, {&root}).dump();
  }
};

inline const Keys& K() {
  static const Keys keys;
  return keys;
}

inline void Expected(const outpost::Error& e) {
  if (e.code() != outpost::ErrorCode::kInvalidArgument &&
      e.code() != outpost::ErrorCode::kPermissionDenied) {
    __builtin_trap();
  }
}

inline void RunTufInput(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const Clock::time_point now = Clock::from_time_t(1'800'000'000);
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  int mode = data[0] % 9;
  try {
    if (mode == 8) {
      json j;
      try {
        j = outpost::ParseJson(rest, outpost::JsonLimits::Document(1u << 20), "canonical");
      } catch (const outpost::Error&) {
        return;
      }
      std::string once = outpost::tuf::CanonicalJson(j);
      json again = outpost::ParseJson(once, outpost::JsonLimits::Document(1u << 21), "again");
      if (outpost::tuf::CanonicalJson(again) != once) __builtin_trap();
      return;
    }
    if (mode >= 4) {
      json signed_part;
      try {
        signed_part = outpost::ParseJson(rest, outpost::JsonLimits::Document(1u << 20), "signed");
      } catch (const outpost::Error&) {
        return;
      }
      const outpost::SigningKey& key = mode == 5 ? K().timestamp : K().root;
      rest = outpost::tuf::SignEnvelope(signed_part, {&key}).dump();
      mode -= 4;
    }
    if (mode == 3) {
      // The root key is the targets key in K()'s root.
      outpost::tuf::Targets t = outpost::tuf::VerifyTargets(K().root_bytes, rest, now);
      if (t.delegations)
        for (const char* path : {"models/a.onnx", "a/b/c", "", "x"})
          static_cast<void>(t.delegations->RolesFor(path));
      CheckAcceptedNesting(rest, 64);
      return;
    }
    if (mode == 2) {
      outpost::tuf::TrustedSet own(rest, now);
      CheckAcceptedNesting(rest, 64);
      return;
    }
    outpost::tuf::TrustedSet set(K().root_bytes, now);
    if (mode == 0) {
      set.UpdateRoot(rest);
    } else {
      if (set.UpdateTimestamp(rest) && set.UpdateTimestamp(rest)) __builtin_trap();  // same version
    }
    CheckAcceptedNesting(rest, 64);
  } catch (const outpost::Error& e) {
    Expected(e);
  }
}

}  // namespace outpost_fuzz
