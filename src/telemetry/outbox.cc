#include "telemetry/outbox.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <chrono>
#include <random>

#include "core/error.h"
#include "core/logging.h"

namespace outpost {
namespace {

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      Fail(ErrorCode::kInternal, std::string("outbox: ") + sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(s_); }
  sqlite3_stmt* get() { return s_; }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(int i, std::string_view v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  int Step() { return sqlite3_step(s_); }

 private:
  sqlite3_stmt* s_ = nullptr;
};

std::string ColumnText(sqlite3_stmt* s, int i) {
  const auto* p = sqlite3_column_blob(s, i);
  return p ? std::string(static_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(s, i)))
           : std::string();
}

// Columns seq, kind, priority, created, payload.
OutboxItem ReadItem(sqlite3_stmt* s) {
  OutboxItem it;
  it.seq = sqlite3_column_int64(s, 0);
  it.kind = ColumnText(s, 1);
  it.priority = sqlite3_column_int(s, 2);
  it.created_unix_nanos = sqlite3_column_int64(s, 3);
  it.payload = ColumnText(s, 4);
  return it;
}

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsDiskFull(int rc) {
  rc &= 0xFF;
  return rc == SQLITE_FULL || rc == SQLITE_IOERR;
}

}  // namespace

Outbox::Outbox(std::filesystem::path path, uint64_t max_bytes)
    : path_(std::move(path)), max_bytes_(max_bytes) {
  if (!path_.parent_path().empty()) std::filesystem::create_directories(path_.parent_path());
  if (sqlite3_open_v2(path_.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    Fail(ErrorCode::kUnavailable, "outbox " + path_.string() + ": " + why);
  }
  sqlite3_busy_timeout(db_, 5000);
  // WAL with synchronous=NORMAL: a killed process loses nothing it committed; a power cut
  // may lose the last transactions but never leaves the store inconsistent.
  Exec("PRAGMA journal_mode=WAL");
  Exec("PRAGMA synchronous=NORMAL");
  Exec(
      "CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT "
      "NULL, "
      "priority INTEGER NOT NULL, created INTEGER NOT NULL, payload BLOB NOT NULL, batch TEXT)");
  Exec("CREATE INDEX IF NOT EXISTS items_eviction ON items (priority, seq) WHERE batch IS NULL");
  Exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL, text TEXT)");
  {
    Stmt s(db_, "SELECT text FROM meta WHERE key = 'instance'");
    if (s.Step() == SQLITE_ROW) instance_ = ColumnText(s.get(), 0);
  }
  if (instance_.empty()) {
    std::random_device rd;
    static const char* kHex = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) instance_ += kHex[rd() % 16];
    Stmt s(db_, "INSERT OR IGNORE INTO meta (key, value, text) VALUES ('instance', 0, ?)");
    s.Bind(1, instance_);
    if (s.Step() != SQLITE_DONE)
      Fail(ErrorCode::kUnavailable, std::string("outbox: ") + sqlite3_errmsg(db_));
  }
  Stmt s(db_, "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM items");
  if (s.Step() == SQLITE_ROW) bytes_ = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 0));
}

Outbox::~Outbox() { sqlite3_close(db_); }

void Outbox::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "?";
    sqlite3_free(err);
    Fail(ErrorCode::kUnavailable, "outbox: " + why);
  }
}

void Outbox::Bump(const std::string& key, int64_t by) {
  Stmt s(db_,
         "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value "
         "+ excluded.value");
  s.Bind(1, key).Bind(2, by);
  s.Step();
}

int64_t Outbox::MetaValue(const std::string& key) {
  Stmt s(db_, "SELECT value FROM meta WHERE key = ?");
  s.Bind(1, key);
  return s.Step() == SQLITE_ROW ? sqlite3_column_int64(s.get(), 0) : 0;
}

bool Outbox::Append(std::string_view kind, int priority, std::string_view payload,
                    std::optional<std::pair<std::string, int64_t>> counter) {
  std::lock_guard lock(mu_);
  auto count_drop = [&](const std::string& reason) {
    // Best effort: on a full disk even this may not be written; the log says it then.
    bool stored = false;
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK) {
      Bump("dropped." + reason, 1);
      stored = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
      if (!stored) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    if (!stored) ++unpersisted_drops_[reason];  // written with the next successful append
    // The first drop of a kind is worth a warning; a flood of them is not worth a disk.
    if (++drops_logged_[reason] == 1 || (drops_logged_[reason] & (drops_logged_[reason] - 1)) == 0)
      Log(LogSeverity::kWarn, "telemetry", "outbox_dropped",
          fmt::format("outbox: dropped an item ({}); {} so far in this run", reason,
                      drops_logged_[reason]),
          {{"reason", reason}, {"dropped", drops_logged_[reason]}});
  };
  if (payload.size() > max_bytes_) {
    count_drop("too_large");
    return false;
  }
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    count_drop("disk_full");
    return false;
  }
  uint64_t freed = 0;
  bool keep = true;
  // Make room: the oldest of the lowest priority first, never what is in flight.
  while (bytes_ - freed + payload.size() > max_bytes_) {
    Stmt pick(db_,
              "SELECT seq, priority, LENGTH(payload) FROM items WHERE batch IS NULL "
              "ORDER BY priority, seq LIMIT 1");
    if (pick.Step() != SQLITE_ROW || sqlite3_column_int(pick.get(), 1) > priority) {
      keep = false;  // everything held matters more (or is in flight): this one goes
      break;
    }
    int64_t seq = sqlite3_column_int64(pick.get(), 0);
    int victim_priority = sqlite3_column_int(pick.get(), 1);
    freed += static_cast<uint64_t>(sqlite3_column_int64(pick.get(), 2));
    Stmt del(db_, "DELETE FROM items WHERE seq = ?");
    del.Bind(1, seq).Step();
    Bump("dropped.full_p" + std::to_string(victim_priority), 1);
  }
  int rc = SQLITE_DONE;
  if (keep) {
    Stmt ins(db_, "INSERT INTO items (kind, priority, created, payload) VALUES (?, ?, ?, ?)");
    ins.Bind(1, kind).Bind(2, priority).Bind(3, NowNanos()).BindBlob(4, payload);
    rc = ins.Step();
  } else {
    Bump("dropped.full_p" + std::to_string(priority), 1);
  }
  for (const auto& [reason, n] : unpersisted_drops_)
    Bump("dropped." + reason, static_cast<int64_t>(n));
  if (rc == SQLITE_DONE && counter) {
    Stmt c(db_,
           "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
           "excluded.value");
    c.Bind(1, "counter." + counter->first).Bind(2, counter->second);
    rc = c.Step();
  }
  if (rc != SQLITE_DONE || sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    int err = rc != SQLITE_DONE ? rc : sqlite3_extended_errcode(db_);
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    count_drop(IsDiskFull(err) ? "disk_full" : "store_error");
    return false;
  }
  bytes_ = bytes_ - freed + (keep ? payload.size() : 0);
  unpersisted_drops_.clear();
  return keep;
}

std::optional<OutboxBatch> Outbox::NextBatch(size_t max_items, size_t max_bytes) {
  std::lock_guard lock(mu_);
  OutboxBatch batch;
  auto load = [&](Stmt& s) {
    while (s.Step() == SQLITE_ROW) {
      batch.items.push_back(ReadItem(s.get()));
      batch.id = ColumnText(s.get(), 5);
    }
  };
  {
    Stmt s(db_,
           "SELECT seq, kind, priority, created, payload, batch FROM items WHERE batch IS NOT NULL "
           "ORDER BY seq");
    load(s);
  }
  if (!batch.items.empty()) return batch;
  Stmt s(db_, "SELECT seq, kind, priority, created, payload, '' FROM items ORDER BY seq LIMIT ?");
  s.Bind(1, static_cast<int64_t>(max_items));
  std::vector<OutboxItem> items;
  size_t bytes = 0;
  while (s.Step() == SQLITE_ROW) {
    OutboxItem it = ReadItem(s.get());
    if (!items.empty() && bytes + it.payload.size() > max_bytes) break;
    bytes += it.payload.size();
    items.push_back(std::move(it));
  }
  if (items.empty()) return std::nullopt;
  batch.id =
      instance_ + "-" + std::to_string(items.front().seq) + "-" + std::to_string(items.back().seq);
  Stmt mark(db_, "UPDATE items SET batch = ? WHERE seq BETWEEN ? AND ?");
  mark.Bind(1, batch.id).Bind(2, items.front().seq).Bind(3, items.back().seq);
  if (mark.Step() != SQLITE_DONE)
    Fail(ErrorCode::kUnavailable, std::string("outbox: ") + sqlite3_errmsg(db_));
  batch.items = std::move(items);
  return batch;
}

void Outbox::Ack(const std::string& batch_id) {
  std::lock_guard lock(mu_);
  Stmt size(db_, "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM items WHERE batch = ?");
  size.Bind(1, batch_id);
  if (size.Step() != SQLITE_ROW) return;
  int64_t n = sqlite3_column_int64(size.get(), 0), b = sqlite3_column_int64(size.get(), 1);
  if (n == 0) return;  // acknowledged before (a retry's late answer)
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    Fail(ErrorCode::kUnavailable, std::string("outbox: ") + sqlite3_errmsg(db_));
  Stmt del(db_, "DELETE FROM items WHERE batch = ?");
  del.Bind(1, batch_id).Step();
  Bump("shipped.items", n);
  Bump("shipped.batches", 1);
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    Fail(ErrorCode::kUnavailable, std::string("outbox: ") + sqlite3_errmsg(db_));
  }
  bytes_ -= static_cast<uint64_t>(b);
}

int64_t Outbox::Counter(const std::string& name) {
  std::lock_guard lock(mu_);
  return MetaValue("counter." + name);
}

OutboxStats Outbox::Stats() {
  std::lock_guard lock(mu_);
  OutboxStats st;
  st.bytes = bytes_;
  {
    Stmt s(db_, "SELECT COUNT(*) FROM items");
    if (s.Step() == SQLITE_ROW) st.items = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 0));
  }
  Stmt s(db_, "SELECT key, value FROM meta WHERE key LIKE 'dropped.%' OR key LIKE 'shipped.%'");
  while (s.Step() == SQLITE_ROW) {
    std::string key = ColumnText(s.get(), 0);
    auto v = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 1));
    if (key == "shipped.items")
      st.shipped_items = v;
    else if (key == "shipped.batches")
      st.shipped_batches = v;
    else
      st.dropped[key.substr(8)] = v;
  }
  for (const auto& [reason, n] : unpersisted_drops_) st.dropped[reason] += n;
  return st;
}

}  // namespace outpost
