// Store-and-forward: telemetry items (events, metric summaries, captures) wait in a bounded
// SQLite database (WAL) that survives crashes and reboots, and leave in batches when a link is
// there. A batch's id is fixed when it is first formed and reused on every retry, so a receiver
// that remembers ids never counts a batch twice; batches leave in item order, one at a time.
// When the store is full, the oldest items of the lowest priority go first, and are counted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;

namespace outpost {

struct OutboxItem {
  int64_t seq = 0;
  std::string kind;
  int priority = 0;  // higher survives longer when the store is full
  int64_t created_unix_nanos = 0;
  std::string payload;
};

struct OutboxBatch {
  std::string id;
  std::vector<OutboxItem> items;
};

struct OutboxStats {
  uint64_t items = 0;
  uint64_t bytes = 0;                       // payload bytes held
  std::map<std::string, uint64_t> dropped;  // "full_p<priority>", "disk_full", ...
  uint64_t shipped_items = 0;
  uint64_t shipped_batches = 0;
};

class Outbox {
 public:
  // Opens or creates the store; throws Error(kUnavailable) when it cannot be opened.
  Outbox(std::filesystem::path path, uint64_t max_bytes);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Stores an item; with `counter`, also sets the named counter in the same transaction (a
  // producer's own position, so that after a crash it knows what was stored). Returns false
  // when the item could not be kept (it is counted as dropped): the disk is full, or the store
  // is full of items that matter more.
  bool Append(std::string_view kind, int priority, std::string_view payload,
              std::optional<std::pair<std::string, int64_t>> counter = std::nullopt);
  // The batch to send now: the one in flight if there is one (same id, same items), else the
  // oldest items up to the limits. nullopt when nothing waits.
  std::optional<OutboxBatch> NextBatch(size_t max_items, size_t max_bytes);
  // The receiver has the batch: its items go.
  void Ack(const std::string& batch_id);
  int64_t Counter(const std::string& name);
  OutboxStats Stats();
  // The store's id, fixed at creation (part of every batch id).
  const std::string& instance() const { return instance_; }

 private:
  void Exec(const char* sql);
  void Bump(const std::string& key, int64_t by);  // under mu_, inside a transaction
  int64_t MetaValue(const std::string& key);
  std::mutex mu_;
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  std::string instance_;
  std::map<std::string, uint64_t> unpersisted_drops_;  // counted while the disk was full
  std::map<std::string, uint64_t> drops_logged_;
};

}  // namespace outpost
