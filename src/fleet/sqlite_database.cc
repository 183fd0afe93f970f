// SQLite engine: WAL, so readers never wait for the writer; a write transaction takes the
// write lock at its start (BEGIN IMMEDIATE), and a busy database is waited for, then retried.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "core/logging.h"
#include "fleet/database.h"

namespace outpost::fleet {
namespace {

SqlError::Kind KindOf(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return SqlError::Kind::kRetry;
    case SQLITE_CONSTRAINT:
      return SqlError::Kind::kConflict;
    default:
      return SqlError::Kind::kOther;
  }
}

class SqliteConnection : public SqlConnection {
 public:
  explicit SqliteConnection(const std::string& path) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      db_ = nullptr;
      Fail(ErrorCode::kUnavailable, "database: cannot open " + path + ": " + why);
    }
    sqlite3_busy_timeout(db_, 5000);
    // journal_size_limit: a WAL that was reset is cut back to this size, not left at its peak.
    Script(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
        "PRAGMA journal_size_limit=16777216;");
  }
  ~SqliteConnection() override {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }

  SqlRows Query(std::string_view sql, const std::vector<SqlArg>& args) override {
    sqlite3_stmt* stmt = Prepare(sql);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    for (size_t i = 0; i < args.size(); ++i) {
      int idx = static_cast<int>(i + 1);
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::nullptr_t>) {
              sqlite3_bind_null(stmt, idx);
            } else if constexpr (std::is_same_v<T, int64_t>) {
              sqlite3_bind_int64(stmt, idx, v);
            } else if constexpr (std::is_same_v<T, double>) {
              sqlite3_bind_double(stmt, idx, v);
            } else {
              sqlite3_bind_text(stmt, idx, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
            }
          },
          args[i].value);
    }
    SqlRows rows;
    int n = sqlite3_column_count(stmt);
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        std::string why = sqlite3_errmsg(db_);
        sqlite3_reset(stmt);
        throw SqlError(KindOf(sqlite3_extended_errcode(db_)), "database: " + why);
      }
      std::vector<std::optional<std::string>> cols(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        if (sqlite3_column_type(stmt, i) == SQLITE_NULL) continue;
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
        cols[static_cast<size_t>(i)] =
            std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt, i)));
      }
      rows.emplace_back(std::move(cols));
    }
    sqlite3_reset(stmt);
    return rows;
  }

  void Script(std::string_view sql) override {
    char* err = nullptr;
    std::string text(sql);
    if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string why = err ? err : "unknown error";
      sqlite3_free(err);
      throw SqlError(KindOf(sqlite3_extended_errcode(db_)), "database: " + why);
    }
  }

  void Begin() override { Script("BEGIN IMMEDIATE"); }
  bool healthy() const override { return db_ != nullptr; }

 private:
  sqlite3_stmt* Prepare(std::string_view sql) {
    std::string key(sql);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, key.c_str(), static_cast<int>(key.size()), &stmt, nullptr) !=
        SQLITE_OK)
      throw SqlError(KindOf(sqlite3_extended_errcode(db_)),
                     std::string("database: ") + sqlite3_errmsg(db_) + " in: " + key);
    cache_.emplace(std::move(key), stmt);
    return stmt;
  }

  sqlite3* db_ = nullptr;
  std::map<std::string, sqlite3_stmt*> cache_;
};

class SqliteDatabase : public Database {
 public:
  SqliteDatabase(std::string path, int pool_size) : Database(pool_size), path_(std::move(path)) {
    write_lock_ = &write_mu_;
  }
  Dialect dialect() const override { return Dialect::kSqlite; }

  // SQLite's automatic checkpoints are passive: they copy the WAL into the database but can only
  // start the WAL over when no reader is using it, and with a pool of connections serving
  // requests one always is, so the WAL grows without end (103 MB in 30 s under fleet_load). A
  // TRUNCATE checkpoint needs no writer and waits for the readers of the moment (milliseconds:
  // every read is one statement); writers queue on write_mu_ meanwhile, so it cannot starve.
  void Maintain() override {
    struct stat st {};
    if (::stat((path_ + "-wal").c_str(), &st) != 0 || st.st_size < kCheckpointBytes) return;
    std::lock_guard writing(write_mu_);
    Read([](SqlConnection& c) { c.Query("PRAGMA wal_checkpoint(TRUNCATE)"); });
  }

 protected:
  std::unique_ptr<SqlConnection> Connect() override {
    return std::make_unique<SqliteConnection>(path_);
  }

 private:
  static constexpr off_t kCheckpointBytes = 8 << 20;
  std::string path_;
  std::mutex write_mu_;
};

}  // namespace

std::unique_ptr<Database> OpenSqlite(const std::string& path, int pool_size) {
  // Token hashes, device keys and the audit trail are the owner's alone. SQLite gives its WAL
  // and shared-memory files the database file's mode, so making that 0600 covers them too.
  if (path != ":memory:" && path.rfind("file:", 0) != 0) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      Fail(ErrorCode::kUnavailable, "database: cannot open " + path + ": " + std::strerror(errno));
    ::close(fd);
    for (const char* suffix : {"", "-wal", "-shm"}) {
      const std::string file = path + suffix;
      struct stat st {};
      if (::lstat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) &&
          ::chmod(file.c_str(), 0600) == 0)
        Log(LogSeverity::kWarn, "fleet", "database_mode",
            file + " was readable by others; its mode is now 0600");
    }
  }
  return std::make_unique<SqliteDatabase>(path, pool_size);
}

}  // namespace outpost::fleet
