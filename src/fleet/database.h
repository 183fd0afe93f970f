// The fleet server's storage: one SQL interface with two engines, SQLite (embedded, the
// default) and PostgreSQL (several stateless replicas sharing one database). Statements are
// written once with `?` placeholders in the SQL both engines accept; what differs (types in
// DDL, row locks, advisory locks) is asked of the dialect. Connections come from a bounded
// pool; `Transact` runs a function in a transaction and retries it from the start when the
// engine says it lost a race (SQLite busy, PostgreSQL serialization failure or deadlock).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/error.h"

namespace outpost::fleet {

enum class Dialect { kSqlite, kPostgres };

// A bound parameter: NULL, an integer, a real, or text.
struct SqlArg {
  std::variant<std::nullptr_t, int64_t, double, std::string> value;
  SqlArg(std::nullptr_t) : value(nullptr) {}
  SqlArg(int v) : value(static_cast<int64_t>(v)) {}
  SqlArg(int64_t v) : value(v) {}
  SqlArg(uint64_t v) : value(static_cast<int64_t>(v)) {}
  SqlArg(bool v) : value(static_cast<int64_t>(v)) {}
  SqlArg(double v) : value(v) {}
  SqlArg(std::string v) : value(std::move(v)) {}
  SqlArg(std::string_view v) : value(std::string(v)) {}
  SqlArg(const char* v) : value(std::string(v)) {}
  template <typename T>
  SqlArg(const std::optional<T>& v) : SqlArg(nullptr) {
    if (v) *this = SqlArg(*v);
  }
};

class SqlRow {
 public:
  explicit SqlRow(std::vector<std::optional<std::string>> cols) : cols_(std::move(cols)) {}
  bool IsNull(size_t i) const { return !cols_.at(i).has_value(); }
  const std::string& Text(size_t i) const;  // "" for NULL
  int64_t Int(size_t i) const;              // 0 for NULL
  double Real(size_t i) const;
  size_t size() const { return cols_.size(); }

 private:
  std::vector<std::optional<std::string>> cols_;
};
using SqlRows = std::vector<SqlRow>;

// What went wrong, so callers can tell a lost race or a duplicate key from a real failure.
class SqlError : public Error {
 public:
  enum class Kind { kRetry, kConflict, kBroken, kOther };
  SqlError(Kind kind, const std::string& message)
      : Error(kind == Kind::kConflict ? ErrorCode::kFailedPrecondition : ErrorCode::kUnavailable,
              message),
        kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// One session with the database; used by one thread at a time.
class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  virtual SqlRows Query(std::string_view sql, const std::vector<SqlArg>& args = {}) = 0;
  // Statements without parameters, several at once (schema set-up).
  virtual void Script(std::string_view sql) = 0;
  // A write transaction: SQLite takes the write lock at once, so transactions never deadlock.
  virtual void Begin() = 0;
  virtual bool healthy() const = 0;

  int64_t QueryInt(std::string_view sql, const std::vector<SqlArg>& args = {});
};

class Database {
 public:
  // "sqlite:/path/to/fleet.db" (or a plain path), or "postgresql://..." / "postgres://...".
  static std::unique_ptr<Database> Open(const std::string& url, int pool_size = 8);
  virtual ~Database() = default;

  virtual Dialect dialect() const = 0;
  // " FOR UPDATE" where the engine has row locks; SQLite's write transaction already excludes.
  std::string_view ForUpdate() const {
    return dialect() == Dialect::kPostgres ? " FOR UPDATE" : "";
  }
  // DDL type names: an auto-incrementing integer key, and a double.
  std::string_view SerialKey() const;
  std::string_view DoubleType() const;

  // Runs `f` in a transaction, committed when it returns, rolled back when it throws; a lost
  // race runs it again (up to a limit), so `f` must not have effects outside the database.
  void Transact(const std::function<void(SqlConnection&)>& f);
  // Runs `f` on a pooled connection, each statement on its own (reads).
  void Read(const std::function<void(SqlConnection&)>& f);
  // Housekeeping the engine needs now and then (SQLite: a checkpoint that cannot starve).
  virtual void Maintain() {}

 protected:
  explicit Database(int pool_size) : pool_size_(pool_size) {}
  virtual std::unique_ptr<SqlConnection> Connect() = 0;
  // An engine whose writers exclude one another anyway (SQLite) queues them here rather than in
  // its busy loop, and its maintenance can hold writers off while it works.
  std::mutex* write_lock_ = nullptr;

 private:
  std::unique_ptr<SqlConnection> Acquire();
  void Release(std::unique_ptr<SqlConnection> c);

  int pool_size_;
  int open_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<SqlConnection>> idle_;
};

std::unique_ptr<Database> OpenSqlite(const std::string& path, int pool_size);
std::unique_ptr<Database> OpenPostgres(const std::string& conninfo, int pool_size);

}  // namespace outpost::fleet
