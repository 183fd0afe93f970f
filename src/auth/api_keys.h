// API keys of the device's API. A key is "opk_<id>_<secret>": the id (12 hex digits) finds
// the record, the secret (32 random bytes, hex) proves it. Only SHA-256 of the secret is
// kept (a 256-bit random secret needs no slow hash: nothing guessable is stored), compared in
// constant time. The records live in <dir>/api_keys.json (0600, dir 0700), rewritten
// atomically on every change; the agent holds them in memory, so a key created or revoked
// through the agent's API takes effect on the next request, without a restart.
//
// Each key may carry a daily budget of cloud tokens (prompt + completion, local calendar
// day), spent by chat requests it sends to the cloud LLM.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "auth/scopes.h"

namespace outpost::auth {

struct ApiKeyInfo {
  std::string id;
  std::string name;
  Scopes scopes = kNoScopes;
  uint64_t budget_tokens = 0;  // cloud tokens per day; 0: no limit of its own
  std::string created;         // UTC, RFC 3339
  bool revoked = false;
  std::string spent_day;  // the day spent_tokens counts
  uint64_t spent_tokens = 0;
};

enum class KeyCheck { kValid, kMalformed, kUnknown, kRevoked };

struct KeyMatch {
  KeyCheck check = KeyCheck::kUnknown;
  std::string id;
  Scopes scopes = kNoScopes;
};

class ApiKeyStore {
 public:
  // Opens the store in `dir` (created 0700 when missing). Throws Error(kFailedPrecondition)
  // when the records are open to group or others, Error(kInvalidArgument) when unreadable.
  explicit ApiKeyStore(std::filesystem::path dir);
  ~ApiKeyStore();

  struct Created {
    ApiKeyInfo info;
    std::string key;  // shown once, stored nowhere
  };
  Created Create(const std::string& name, Scopes scopes, uint64_t budget_tokens = 0);
  // Throws Error(kNotFound) for an unknown id.
  void Revoke(const std::string& id);
  std::vector<ApiKeyInfo> List() const;
  KeyMatch Verify(std::string_view presented) const;

  // The key's own cloud budget for today: false once spent (true without a budget).
  bool HasCloudRoom(const std::string& id) const;
  void SpendCloud(const std::string& id, uint64_t tokens);

  // The console's key: <dir>/admin.key (0600) holds a key with every scope, which the
  // `outpost` CLI on the device reads. Made at first start, and again when the file is gone
  // or its key no longer valid (revoked: that is how it is rotated). Returns its path.
  std::filesystem::path EnsureLocalAdminKey();

  const std::filesystem::path& dir() const { return dir_; }

 private:
  struct Record;
  // A hash map looked up by string_view: the check runs on the event loop for every request,
  // and a tree of a thousand keys costs cache misses a hash lookup does not.
  struct IdHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::vector<const Record*> SortedLocked() const;  // oldest first
  void SaveLocked() const;
  std::filesystem::path dir_;
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<Record>, IdHash, std::equal_to<>> records_;
};

// True for what claims to be one of our keys (it starts "opk_"), valid or not.
bool IsApiKeyShaped(std::string_view presented);

// The part of a presented key that may be logged: its id ("opk_1a2b3c4d5e6f"), or "" when it
// is not shaped like a key.
std::string KeyIdOf(std::string_view presented);

}  // namespace outpost::auth
