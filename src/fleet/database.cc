#include "fleet/database.h"

#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>

namespace outpost::fleet {

const std::string& SqlRow::Text(size_t i) const {
  static const std::string kEmpty;
  const auto& c = cols_.at(i);
  return c ? *c : kEmpty;
}

int64_t SqlRow::Int(size_t i) const {
  const auto& c = cols_.at(i);
  return c ? std::strtoll(c->c_str(), nullptr, 10) : 0;
}

double SqlRow::Real(size_t i) const {
  const auto& c = cols_.at(i);
  return c ? std::strtod(c->c_str(), nullptr) : 0.0;
}

int64_t SqlConnection::QueryInt(std::string_view sql, const std::vector<SqlArg>& args) {
  auto rows = Query(sql, args);
  return rows.empty() ? 0 : rows[0].Int(0);
}

std::unique_ptr<Database> Database::Open(const std::string& url, int pool_size) {
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0)
    return OpenPostgres(url, pool_size);
  std::string path = url.rfind("sqlite:", 0) == 0 ? url.substr(7) : url;
  if (path.empty()) Fail(ErrorCode::kInvalidArgument, "database: empty SQLite path");
  return OpenSqlite(path, pool_size);
}

std::string_view Database::SerialKey() const {
  return dialect() == Dialect::kPostgres ? "BIGSERIAL PRIMARY KEY"
                                         : "INTEGER PRIMARY KEY AUTOINCREMENT";
}

std::string_view Database::DoubleType() const {
  return dialect() == Dialect::kPostgres ? "DOUBLE PRECISION" : "REAL";
}

std::unique_ptr<SqlConnection> Database::Acquire() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !idle_.empty() || open_ < pool_size_; });
  if (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }
  ++open_;
  lock.unlock();
  try {
    return Connect();
  } catch (...) {
    std::lock_guard relock(mu_);
    --open_;
    cv_.notify_one();
    throw;
  }
}

void Database::Release(std::unique_ptr<SqlConnection> c) {
  std::lock_guard lock(mu_);
  if (c && c->healthy()) {
    idle_.push_back(std::move(c));
  } else {
    --open_;  // a broken session is dropped; the next caller opens a fresh one
  }
  cv_.notify_one();
}

namespace {

// Returns a connection to the pool however the scope is left.
class Lease {
 public:
  Lease(std::unique_ptr<SqlConnection> c, std::function<void(std::unique_ptr<SqlConnection>)> back)
      : c_(std::move(c)), back_(std::move(back)) {}
  ~Lease() { back_(std::move(c_)); }
  SqlConnection& operator*() { return *c_; }

 private:
  std::unique_ptr<SqlConnection> c_;
  std::function<void(std::unique_ptr<SqlConnection>)> back_;
};

}  // namespace

void Database::Read(const std::function<void(SqlConnection&)>& f) {
  for (int attempt = 0;; ++attempt) {
    try {
      Lease c(Acquire(), [this](auto conn) { Release(std::move(conn)); });
      f(*c);
      return;
    } catch (const SqlError& e) {
      // A connection that broke (a restarted server) is retried once on a fresh one.
      if (e.kind() != SqlError::Kind::kBroken || attempt >= 1) throw;
    }
  }
}

void Database::Transact(const std::function<void(SqlConnection&)>& f) {
  constexpr int kAttempts = 12;
  thread_local std::minstd_rand jitter(std::random_device{}());
  for (int attempt = 0;; ++attempt) {
    SqlError::Kind failure;
    std::string why;
    {
      // Before the connection: whoever holds the write lock can always get one.
      std::unique_lock<std::mutex> writing;
      if (write_lock_) writing = std::unique_lock(*write_lock_);
      Lease c(Acquire(), [this](auto conn) { Release(std::move(conn)); });
      try {
        (*c).Begin();
        f(*c);
        (*c).Script("COMMIT");
        return;
      } catch (const SqlError& e) {
        if ((*c).healthy()) {
          try {
            (*c).Script("ROLLBACK");
          } catch (const SqlError&) {
          }
        }
        if (e.kind() != SqlError::Kind::kRetry && e.kind() != SqlError::Kind::kBroken) throw;
        failure = e.kind();
        why = e.what();
      } catch (...) {
        if ((*c).healthy()) {
          try {
            (*c).Script("ROLLBACK");
          } catch (const SqlError&) {
          }
        }
        throw;
      }
    }
    if (attempt + 1 >= kAttempts || (failure == SqlError::Kind::kBroken && attempt >= 1))
      throw SqlError(
          failure, "database: gave up after " + std::to_string(attempt + 1) + " attempts: " + why);
    std::this_thread::sleep_for(
        std::chrono::milliseconds(1 + jitter() % (5u << std::min(attempt, 5))));
  }
}

}  // namespace outpost::fleet
