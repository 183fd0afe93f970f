// PostgreSQL engine (libpq): statements are prepared once per connection; transactions are
// READ COMMITTED with explicit row locks (Database::ForUpdate) where a step must be done once.
#include <libpq-fe.h>

#include <fmt/format.h>

#include <map>

#include "fleet/database.h"

namespace outpost::fleet {
namespace {

// `?` placeholders (outside quoted text) become $1, $2, ...
std::string NumberPlaceholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  bool quoted = false;
  for (char c : sql) {
    if (c == '\'') quoted = !quoted;
    if (c == '?' && !quoted) {
      out += "$" + std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

class PgConnection : public SqlConnection {
 public:
  explicit PgConnection(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string why = PQerrorMessage(conn_);
      PQfinish(conn_);
      conn_ = nullptr;
      while (!why.empty() && why.back() == '\n') why.pop_back();
      throw SqlError(SqlError::Kind::kBroken, "database: cannot connect to PostgreSQL: " + why);
    }
    Script("SET client_min_messages = warning");
  }
  ~PgConnection() override { PQfinish(conn_); }

  SqlRows Query(std::string_view sql, const std::vector<SqlArg>& args) override {
    const std::string& name = Prepare(sql, static_cast<int>(args.size()));
    std::vector<std::string> text(args.size());
    std::vector<const char*> values(args.size());
    for (size_t i = 0; i < args.size(); ++i) {
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::nullptr_t>) {
              values[i] = nullptr;
            } else {
              if constexpr (std::is_same_v<T, int64_t>) {
                text[i] = std::to_string(v);
              } else if constexpr (std::is_same_v<T, double>) {
                text[i] = fmt::format("{:.17g}", v);
              } else {
                text[i] = v;
              }
              values[i] = text[i].c_str();
            }
          },
          args[i].value);
    }
    PGresult* res = PQexecPrepared(conn_, name.c_str(), static_cast<int>(args.size()),
                                   values.data(), nullptr, nullptr, 0);
    return Collect(res);
  }

  void Script(std::string_view sql) override {
    std::string text(sql);
    Collect(PQexec(conn_, text.c_str()));
  }

  void Begin() override { Script("BEGIN"); }
  bool healthy() const override { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

 private:
  const std::string& Prepare(std::string_view sql, int nparams) {
    std::string key(sql);
    if (auto it = prepared_.find(key); it != prepared_.end()) return it->second;
    std::string name = "s" + std::to_string(prepared_.size());
    Collect(PQprepare(conn_, name.c_str(), NumberPlaceholders(sql).c_str(), nparams, nullptr));
    return prepared_.emplace(std::move(key), std::move(name)).first->second;
  }

  SqlRows Collect(PGresult* res) {
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      std::string code = state ? state : "";
      std::string why = PQresultErrorMessage(res);
      PQclear(res);
      while (!why.empty() && why.back() == '\n') why.pop_back();
      SqlError::Kind kind = SqlError::Kind::kOther;
      if (code == "40001" || code == "40P01") {
        kind = SqlError::Kind::kRetry;
      } else if (code.rfind("23", 0) == 0) {
        kind = SqlError::Kind::kConflict;
      } else if (code.rfind("08", 0) == 0 || code.rfind("57P", 0) == 0 || !healthy()) {
        kind = SqlError::Kind::kBroken;
      }
      throw SqlError(kind, "database: " + why);
    }
    SqlRows rows;
    int n = PQntuples(res), m = PQnfields(res);
    rows.reserve(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) {
      std::vector<std::optional<std::string>> cols(static_cast<size_t>(m));
      for (int c = 0; c < m; ++c)
        if (!PQgetisnull(res, r, c))
          cols[static_cast<size_t>(c)] =
              std::string(PQgetvalue(res, r, c), static_cast<size_t>(PQgetlength(res, r, c)));
      rows.emplace_back(std::move(cols));
    }
    PQclear(res);
    return rows;
  }

  PGconn* conn_;
  std::map<std::string, std::string> prepared_;
};

class PgDatabase : public Database {
 public:
  PgDatabase(std::string conninfo, int pool_size)
      : Database(pool_size), conninfo_(std::move(conninfo)) {}
  Dialect dialect() const override { return Dialect::kPostgres; }

 protected:
  std::unique_ptr<SqlConnection> Connect() override {
    return std::make_unique<PgConnection>(conninfo_);
  }

 private:
  std::string conninfo_;
};

}  // namespace

std::unique_ptr<Database> OpenPostgres(const std::string& conninfo, int pool_size) {
  return std::make_unique<PgDatabase>(conninfo, pool_size);
}

}  // namespace outpost::fleet
