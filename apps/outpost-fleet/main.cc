// outpost-fleet: the fleet server, and the local commands that need its database (the first
// operator token, audit verification, schema migration). Exit codes: 0 success, 1 failure,
// 2 bad usage.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <iostream>
#include <thread>

#include "core/atomic_file.h"
#include "core/credentials.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/memory_budget.h"
#include "fleet/fleet_http.h"
#include "fleet/schema.h"

namespace {

using namespace outpost;
using namespace outpost::fleet;

std::string DefaultDatabase() {
  const char* env = std::getenv("OUTPOST_FLEET_DB");
  return env && *env ? env : "sqlite:outpost-fleet.db";
}

std::string DefaultReplica() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

int Serve(const std::string& db_url, FleetOptions options, FleetServerOptions server_options,
          int pool) {
  // Blocked before any thread starts (the webhook sender's too), so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto db = Database::Open(db_url, pool);
  Migrate(*db);
  Fleet fleet(*db, options);
  FleetServer server(fleet, server_options);
  server.Bind();
  Log(LogSeverity::kInfo, "fleet", "listening",
      fmt::format("outpost-fleet {} serving on {}:{} ({}, replica {})", OUTPOST_VERSION,
                  server_options.host, server.port(),
                  db->dialect() == Dialect::kPostgres ? "PostgreSQL" : "SQLite", options.replica),
      {{"port", server.port()}});
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    Log(LogSeverity::kInfo, "fleet", "stopping", "stopping on signal " + std::to_string(sig));
    server.Stop();
  });
  server.Serve();
  if (waiter.joinable()) {
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  UseServerAllocation();
  CLI::App app{
      "outpost-fleet: enrollment, desired state, staged rollouts, telemetry and audit for a fleet "
      "of Outpost devices"};
  app.require_subcommand(1);
  std::string db_url = DefaultDatabase(), db_file, log_level = "info", log_format = "text";
  bool db_from_argv = false;
  app.add_option_function<std::string>(
         "--db",
         [&](const std::string& url) {
           db_url = url;
           db_from_argv = true;
         },
         "Database: sqlite:PATH (default sqlite:outpost-fleet.db, or $OUTPOST_FLEET_DB) or "
         "postgresql://... (with a password: use --db-file or $OUTPOST_FLEET_DB)")
      ->type_name("URL");
  app.add_option("--db-file", db_file, "File (0600) holding the database URL");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("--log-format", log_format, "text or json");

  auto* serve = app.add_subcommand("serve", "Run the server");
  FleetOptions options;
  options.replica = DefaultReplica();
  FleetServerOptions server_options;
  int tick_ms = 1000, pool = 16;
  serve->add_option("--host", server_options.host, "Address to listen on (default 127.0.0.1)");
  serve->add_option("--port", server_options.port, "Port (default 8500; 0 picks a free one)");
  serve->add_option("--threads", server_options.threads, "HTTP worker threads (default 16)");
  serve->add_option("--db-connections", pool, "Database connections (default 16)");
  serve->add_option("--replica", options.replica, "This replica's name (default host-pid)");
  serve->add_option("--rollout-tick-ms", tick_ms,
                    "How often rollouts are evaluated (default 1000)");
  serve->add_option("--poll-secs", server_options.poll_secs,
                    "How long devices wait between polls (default 60)");
  serve->add_option("--drift-webhook", options.drift_webhook_url,
                    "Forward drift events here as retraining triggers");
  serve->add_option("--repository-url", options.repository_url,
                    "The update repository devices fetch packages from");
  std::string repository_dir, online_key;
  serve->add_option("--repository-dir", repository_dir,
                    "Keep an update repository (served under /repo): target files live here");
  serve->add_option("--online-key", online_key,
                    "The key (0600) this server signs its audit head with, and the update "
                    "repository's snapshot and timestamp");
  double audit_sign_secs = 300;
  serve->add_option("--audit-sign-secs", audit_sign_secs,
                    "The signed audit head is logged when it moves and at least this often "
                    "(default 300)");
  double batch_retention_secs = 7 * 86400, event_retention_secs = 30 * 86400;
  serve->add_option("--batch-retention-secs", batch_retention_secs,
                    "How long telemetry batch ids are remembered, so a redelivered batch counts "
                    "once (default 7 days)");
  serve->add_option("--event-retention-secs", event_retention_secs,
                    "How long device events (drift, anomalies) are kept (default 30 days)");
  serve->add_option("--online-expiry-days", options.online_expiry_days,
                    "Lifetime of signed snapshot and timestamp (re-signed at half; default 7)");

  auto* token = app.add_subcommand("token", "Operator tokens, made on the server itself");
  token->require_subcommand(1);
  auto* create = token->add_subcommand("create", "Make a token (printed once)");
  std::string name = "admin", scope = "admin";
  bool as_json = false;
  create->add_option("--name", name, "Who or what the token is for");
  create->add_option("--scope", scope, "read, write or admin (default admin)");
  create->add_flag("--json", as_json, "Print JSON");

  auto* audit = app.add_subcommand("audit", "The audit log");
  audit->require_subcommand(1);
  auto* verify = audit->add_subcommand("verify", "Check the hash chain end to end");
  verify->add_flag("--json", as_json, "Print JSON");
  app.add_subcommand("migrate", "Create or upgrade the database schema");

  CLI11_PARSE(app, argc, argv);
  try {
    InitLogging(log_level, log_format == "json");
    if (db_from_argv && UrlHasPassword(db_url))
      WarnSecretOnCommandLine("--db", "--db-file or $OUTPOST_FLEET_DB");
    if (!db_file.empty()) db_url = ReadSecretFile(db_file);
    if (serve->parsed()) {
      server_options.rollout_tick = std::chrono::milliseconds(tick_ms);
      server_options.audit_sign_interval = static_cast<fleet::Millis>(audit_sign_secs * 1000);
      if (!(batch_retention_secs > 0) || !(event_retention_secs > 0))
        Fail(ErrorCode::kInvalidArgument, "retention must be positive");
      options.batch_retention_ms = static_cast<Millis>(batch_retention_secs * 1000);
      options.event_retention_ms = static_cast<Millis>(event_retention_secs * 1000);
      if (!repository_dir.empty() && online_key.empty())
        Fail(ErrorCode::kInvalidArgument, "--repository-dir needs --online-key");
      if (!online_key.empty()) {
        RequirePrivateFile(online_key);
        options.online_key = LoadSigningKey(online_key);
        options.repository_dir = repository_dir;
      }
      return Serve(db_url, options, server_options, pool);
    }
    auto db = Database::Open(db_url, 2);
    Migrate(*db);
    if (create->parsed()) {
      nlohmann::json t = Fleet::CreateTokenDirect(*db, name, ParseScope(scope), "local:" + name);
      if (as_json) {
        std::cout << t.dump(2) << "\n";
      } else {
        std::cout << t["token"].get<std::string>() << "\n";
        std::cerr << "token " << t["id"].get<std::string>() << " (" << scope
                  << "): keep it secret, it is not shown again\n";
      }
      return 0;
    }
    if (verify->parsed()) {
      AuditVerdict v = Fleet::VerifyAudit(*db);
      std::cout << (as_json ? ToJson(v).dump(2) : Describe(v)) << "\n";
      return v.ok ? 0 : 1;
    }
    std::cout << "schema at version " << kSchemaVersion << "\n";
    return 0;
  } catch (const Error& e) {
    std::cerr << "outpost-fleet: " << e.what() << "\n";
    return 1;
  }
}
