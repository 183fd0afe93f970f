// fleet_load: simulates a fleet of devices against one or more outpost-fleet replicas, in one
// process. Each simulated device has its own Ed25519 key, enrolls with a shared enrollment
// token, then polls its desired state (ETag) every --poll-secs with +-20 % jitter, and every
// --report-every polls reports its state and ships one OTLP telemetry batch. Prints request
// latency percentiles per kind, polls per second, the servers' CPU seconds per 1,000 polls
// (from /proc/<pid>/stat of --server-pid) and the database size.
//
//   fleet_load --server http://127.0.0.1:8500 --token opt_... --devices 10000 --poll-secs 5
//              --seconds 60 --server-pid 1234 --db sqlite:/tmp/fleet.db
#include <httplib.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <queue>
#include <random>
#include <sstream>
#include <thread>

#include "fleet/database.h"
#include "fleet/identity.h"
#include "package/keys.h"
#include "package/sha256.h"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace outpost;

struct SimDevice {
  SigningKey key;
  std::string id, etag;
  int64_t last_ms = 0;
  int polls = 0;
  int batches = 0;
};

struct Latencies {
  std::mutex mu;
  std::map<std::string, std::vector<double>> ms;
  std::map<std::string, uint64_t> errors;
  void Add(const std::string& kind, double v) {
    std::lock_guard lock(mu);
    ms[kind].push_back(v);
  }
  void Error(const std::string& kind) {
    std::lock_guard lock(mu);
    ++errors[kind];
  }
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double CpuSeconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  std::vector<std::string> fields;
  while (rest >> field) fields.push_back(field);
  if (fields.size() < 13) return 0;
  // Fields 14 and 15 of stat (utime, stime), counted from the state field (3).
  return (std::stod(fields[11]) + std::stod(fields[12])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The processes whose parent is `pid` (PostgreSQL's backends under its postmaster).
std::vector<int> ChildrenOf(int pid) {
  std::vector<int> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream f(e.path() / "stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = s.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(s.substr(close + 2));
    std::string state;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == pid) out.push_back(std::stoi(name));
  }
  return out;
}

double ProcessCpu(const std::vector<int>& pids) {
  double total = 0;
  for (int pid : pids) total += CpuSeconds(pid);
  return total;
}

class Loader {
 public:
  Loader(std::vector<std::string> servers, int threads) : servers_(std::move(servers)) {
    clients_.resize(static_cast<size_t>(threads));
    for (auto& per_thread : clients_)
      for (const auto& s : servers_) {
        auto c = std::make_unique<httplib::Client>(s);
        c->set_keep_alive(true);
        c->set_tcp_nodelay(true);
        c->set_connection_timeout(10);
        c->set_read_timeout(30);
        per_thread.push_back(std::move(c));
      }
  }

  // A signed request from `d` on thread `t`, round robin over replicas.
  httplib::Result Signed(int t, SimDevice& d, const std::string& method, const std::string& path,
                         const std::string& body, httplib::Headers extra = {}) {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    d.last_ms = std::max<int64_t>(now, d.last_ms + 1);
    std::string sig =
        ToHex(Sign(d.key, fleet::SigningString(method, path, d.id, d.last_ms, Sha256Hex(body))));
    extra.emplace("X-Outpost-Device", d.id);
    extra.emplace("X-Outpost-Time", std::to_string(d.last_ms));
    extra.emplace("X-Outpost-Signature", sig);
    auto& c = Client(t);
    return method == "GET" ? c.Get(path, extra) : c.Post(path, extra, body, "application/json");
  }

  httplib::Client& Client(int t) {
    auto& per_thread = clients_[static_cast<size_t>(t)];
    return *per_thread[next_[t % 64]++ % per_thread.size()];
  }

 private:
  std::vector<std::string> servers_;
  std::vector<std::vector<std::unique_ptr<httplib::Client>>> clients_;
  size_t next_[64] = {};
};

std::string OtlpBatch(const SimDevice& d, int n) {
  json rec = {
      {"timeUnixNano", std::to_string(std::chrono::system_clock::now().time_since_epoch().count())},
      {"severityText", "info"},
      {"body", {{"stringValue", "summary"}}},
      {"attributes",
       {{{"key", "event.name"}, {"value", {{"stringValue", "summary"}}}},
        {{"key", "inferences"}, {"value", {{"intValue", "1200"}}}}}}};
  json body = {{"resourceLogs",
                {{{"resource",
                   {{"attributes",
                     {{{"key", "outpost.batch.id"},
                       {"value", {{"stringValue", fmt::format("{}-{}", d.id, n)}}}}}}}},
                  {"scopeLogs", {{{"logRecords", {rec}}}}}}}}};
  return body.dump();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fleet_load: many simulated devices against outpost-fleet replicas"};
  std::vector<std::string> servers{"http://127.0.0.1:8500"};
  std::string token, db_url, label = "run";
  int devices = 10000, threads = 12, report_every = 6;
  double poll_secs = 5, seconds = 60;
  std::vector<int> pids;
  int db_pid = 0;
  app.add_option("--server", servers, "Replica URLs (round robin)")->delimiter(',');
  app.add_option("--token", token, "Operator token (write) for the enrollment token")->required();
  app.add_option("--devices", devices);
  app.add_option("--threads", threads, "Client threads (keep them below the servers' threads)");
  app.add_option("--poll-secs", poll_secs, "Each device's polling interval (jittered)");
  app.add_option("--report-every", report_every, "Report + telemetry batch every N polls");
  app.add_option("--seconds", seconds, "How long to measure after enrollment");
  app.add_option("--server-pid", pids, "Server processes whose CPU time is measured");
  app.add_option("--db", db_url, "The servers' database, for its size");
  app.add_option("--db-pid", db_pid,
                 "PostgreSQL's postmaster: its backends' CPU time is shown too");
  app.add_option("--label", label);
  double size_every = 0;
  app.add_option("--size-every", size_every,
                 "Print a SQLite database's file and WAL sizes every this many seconds");
  CLI11_PARSE(app, argc, argv);
  const std::string sqlite_path =
      db_url.rfind("postgres", 0) == 0 || db_url.empty()
          ? ""
          : (db_url.rfind("sqlite:", 0) == 0 ? db_url.substr(7) : db_url);
  auto file_mb = [](const std::string& path) {
    std::error_code ec;
    auto bytes = std::filesystem::file_size(path, ec);
    return ec ? 0.0 : static_cast<double>(bytes) / 1e6;
  };

  httplib::Client admin(servers[0]);
  admin.set_tcp_nodelay(true);
  auto tok = admin.Post("/api/v1/enrollment-tokens", {{"Authorization", "Bearer " + token}},
                        json({{"uses", devices}, {"tags", {{"fleet", "load"}}}}).dump(),
                        "application/json");
  if (!tok || tok->status != 201) {
    std::cerr << "fleet_load: cannot make an enrollment token: "
              << (tok ? tok->body : httplib::to_string(tok.error())) << "\n";
    return 1;
  }
  std::string enroll_token = json::parse(tok->body)["token"];
  // A small deployment so desired states are not empty.
  admin.Put("/api/v1/deployments/load-base", {{"Authorization", "Bearer " + token}},
            json({{"packages", {{"dense64", "1.0.0"}}}, {"selector", {{"fleet", "load"}}}}).dump(),
            "application/json");

  std::vector<SimDevice> fleet(static_cast<size_t>(devices));
  Loader loader(servers, threads);
  Latencies lat;
  auto t0 = Clock::now();
  {
    std::atomic<size_t> next{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        for (size_t i; (i = next++) < fleet.size();) {
          SimDevice& d = fleet[i];
          d.key = GenerateSigningKey("device");
          std::string pub = ToHex(d.key.pub.public_key);
          json body = {
              {"token", enroll_token},
              {"public_key", pub},
              {"signature", ToHex(Sign(d.key, fleet::EnrollmentSigningString(enroll_token, pub)))},
              {"capabilities", {{"arch", "x86_64"}}},
              {"agent_version", "0.1.0"}};
          auto start = Clock::now();
          auto res = loader.Client(t).Post("/api/v1/enroll", body.dump(), "application/json");
          lat.Add("enroll",
                  std::chrono::duration<double, std::milli>(Clock::now() - start).count());
          if (res && res->status == 201) {
            d.id = json::parse(res->body)["device_id"];
          } else {
            lat.Error("enroll");
          }
        }
      });
    for (auto& w : workers) w.join();
  }
  double enroll_secs = std::chrono::duration<double>(Clock::now() - t0).count();

  // Each device's next poll time, spread over the first interval.
  using Due = std::pair<Clock::time_point, size_t>;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due;
  std::mt19937_64 rng(42);
  auto start = Clock::now();
  for (size_t i = 0; i < fleet.size(); ++i)
    due.emplace(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                            std::uniform_real_distribution<double>(0, poll_secs)(rng))),
                i);
  std::mutex due_mu;
  std::atomic<uint64_t> polls{0}, late{0};
  lat.ms.erase("poll");
  double cpu_before = ProcessCpu(pids);
  std::vector<int> db_pids = db_pid ? ChildrenOf(db_pid) : std::vector<int>{};
  if (db_pid) db_pids.push_back(db_pid);
  double db_cpu_before = ProcessCpu(db_pids);
  auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  // The database's size while it runs: it must level off, not grow with the run's length.
  std::atomic<bool> sampling{size_every > 0 && !sqlite_path.empty()};
  double peak_file = 0, peak_wal = 0;
  std::thread sampler([&] {
    auto next = Clock::now();
    while (sampling && Clock::now() < end) {
      const double f = file_mb(sqlite_path), w = file_mb(sqlite_path + "-wal");
      peak_file = std::max(peak_file, f);
      peak_wal = std::max(peak_wal, w);
      fmt::print("  t={:>5.0f} s  database {:>7.1f} MB  wal {:>7.1f} MB\n",
                 std::chrono::duration<double>(Clock::now() - start).count(), f, w);
      std::fflush(stdout);
      next +=
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(size_every));
      while (sampling && Clock::now() < next && Clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      std::mt19937_64 jitter(static_cast<uint64_t>(t) + 1);
      for (;;) {
        Due item;
        {
          std::lock_guard lock(due_mu);
          item = due.top();
          due.pop();
        }
        if (item.first >= end) return;
        auto now = Clock::now();
        if (item.first > now)
          std::this_thread::sleep_until(item.first);
        else if (now - item.first > std::chrono::seconds(1))
          ++late;
        SimDevice& d = fleet[item.second];
        if (!d.id.empty()) {
          httplib::Headers h;
          if (!d.etag.empty()) h.emplace("If-None-Match", d.etag);
          auto s = Clock::now();
          auto res = loader.Signed(t, d, "GET", "/api/v1/device/desired-state", "", h);
          lat.Add("poll", std::chrono::duration<double, std::milli>(Clock::now() - s).count());
          if (res && (res->status == 200 || res->status == 304)) {
            if (res->status == 200) d.etag = res->get_header_value("ETag");
            ++polls;
          } else {
            lat.Error("poll");
          }
          if (++d.polls % report_every == 0) {
            json report = {
                {"agent_version", "0.1.0"},
                {"models", {{"dense64", "1.0.0"}}},
                {"health", {{"ready", true}, {"error_rate", 0.0}, {"latency_ms", 3.5}}},
                {"deployments", {{"load-base", {{"revision", 1}, {"status", "installed"}}}}}};
            s = Clock::now();
            res = loader.Signed(t, d, "POST", "/api/v1/device/report", report.dump());
            lat.Add("report", std::chrono::duration<double, std::milli>(Clock::now() - s).count());
            if (!res || res->status != 200) lat.Error("report");
            s = Clock::now();
            res = loader.Signed(t, d, "POST", "/api/v1/device/telemetry/v1/logs",
                                OtlpBatch(d, ++d.batches));
            lat.Add("telemetry",
                    std::chrono::duration<double, std::milli>(Clock::now() - s).count());
            if (!res || res->status != 200) lat.Error("telemetry");
          }
        }
        double wait = poll_secs * std::uniform_real_distribution<double>(0.8, 1.2)(jitter);
        std::lock_guard lock(due_mu);
        due.emplace(item.first + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(wait)),
                    item.second);
      }
    });
  for (auto& w : workers) w.join();
  sampling = false;
  sampler.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  double cpu = ProcessCpu(pids) - cpu_before;
  double db_cpu = ProcessCpu(db_pids) - db_cpu_before;

  std::string db_size = "-";
  if (!db_url.empty()) {
    try {
      auto db = fleet::Database::Open(db_url, 1);
      if (db->dialect() == fleet::Dialect::kPostgres) {
        db->Read([&](fleet::SqlConnection& c) {
          db_size = fmt::format("{:.1f} MB",
                                c.QueryInt("SELECT pg_database_size(current_database())") / 1e6);
        });
      } else {
        std::string path = db_url.rfind("sqlite:", 0) == 0 ? db_url.substr(7) : db_url;
        uint64_t bytes = 0;
        for (const char* suffix : {"", "-wal"})
          if (std::filesystem::exists(path + suffix))
            bytes += std::filesystem::file_size(path + suffix);
        db_size = fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6);
      }
    } catch (const std::exception& e) {
      db_size = std::string("? (") + e.what() + ")";
    }
  }

  fmt::print(
      "\nfleet_load [{}]: {} devices, {} replica(s), poll every {:.1f} s +-20 %, report + "
      "telemetry every {} polls, {} client threads\n",
      label, devices, servers.size(), poll_secs, report_every, threads);
  fmt::print("enrollment: {:.1f} s ({:.0f} devices/s)\n", enroll_secs, devices / enroll_secs);
  fmt::print("{:<10} {:>9} {:>9} {:>9} {:>9} {:>7}\n", "request", "count", "p50_ms", "p99_ms",
             "max_ms", "errors");
  for (auto& [kind, v] : lat.ms)
    fmt::print("{:<10} {:>9} {:>9.2f} {:>9.2f} {:>9.2f} {:>7}\n", kind, v.size(),
               Percentile(v, 0.5), Percentile(v, 0.99), Percentile(v, 1.0), lat.errors[kind]);
  fmt::print("polls: {} in {:.1f} s = {:.0f}/s (offered {:.0f}/s; {} started over 1 s late)\n",
             polls.load(), elapsed, polls / elapsed, devices / poll_secs, late.load());
  if (!pids.empty())
    fmt::print(
        "server CPU: {:.1f} s over {:.1f} s = {:.2f} CPU s per 1,000 polls (reports and "
        "telemetry included)\n",
        cpu, elapsed, polls ? cpu / (static_cast<double>(polls) / 1000.0) : 0.0);
  if (db_pid)
    fmt::print("PostgreSQL CPU: {:.1f} s = {:.2f} CPU s per 1,000 polls ({} processes)\n", db_cpu,
               polls ? db_cpu / (static_cast<double>(polls) / 1000.0) : 0.0, db_pids.size());
  fmt::print("database size: {}\n", db_size);
  if (size_every > 0 && !sqlite_path.empty())
    fmt::print("largest while running: database {:.1f} MB, wal {:.1f} MB\n", peak_file, peak_wal);
  return 0;
}
