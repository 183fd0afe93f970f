// outpostd: the device agent. Embedded defaults < --config file < command-line flags.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_input.h"
#include "core/logging.h"
#include "core/memory_budget.h"
#include "serving/agent.h"

#ifdef OUTPOST_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace {

// Beside the build tree's binary the bundled samples live in ../models; installed, in /var/lib.
std::filesystem::path DefaultRepository() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto beside = exe.parent_path().parent_path() / "models";
    if (std::filesystem::is_directory(beside, ec)) return beside;
  }
  return "/var/lib/outpost/models";
}

// The build tree's samples are signed by a key whose trust file sits beside the binaries.
std::filesystem::path DefaultTrustFile() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec && std::filesystem::exists(exe.parent_path().parent_path() / "trust.json")) {
    return exe.parent_path().parent_path() / "trust.json";
  }
  if (std::filesystem::exists("/etc/outpost/trust.json")) return "/etc/outpost/trust.json";
  return {};
}

template <typename T>
void Override(const std::optional<T>& flag, T& field) {
  if (flag) field = *flag;
}

}  // namespace

int main(int argc, char** argv) {
  outpost::UseServerAllocation();
  CLI::App app{"outpostd: serves signed ONNX models over KServe v2 (HTTP and gRPC) on this device"};
  std::string config_file;
  std::optional<std::string> repository, trust_file, http_address, grpc_address, metrics_address,
      log_level, log_format;
  std::optional<int> http_port, grpc_port, metrics_port, http_threads, timeout_ms, intra_threads;
  std::optional<double> poll_secs;
  std::optional<size_t> max_request, max_inflight;
  std::optional<std::vector<std::string>> providers;
  std::optional<std::string> update_url, update_root, update_state_dir;
  std::optional<double> update_interval, update_canary;
  std::optional<std::vector<std::string>> pinned;
  bool print_config = false, allow_unsigned = false;
  app.add_option("--config", config_file, "JSON config file (keys as in --print-config)")
      ->check(CLI::ExistingFile);
  app.add_option("--model-repository", repository, "Model repository directory");
  app.add_option("--trust-file", trust_file,
                 "Trust file: keys whose signatures make a model package loadable");
  app.add_flag("--allow-unsigned-models", allow_unsigned,
               "Development mode: also serve model directories no trusted signature covers");
  app.add_option("--http-address", http_address, "Address for HTTP (default 127.0.0.1)");
  app.add_option("--http-port", http_port, "HTTP port (default 8000)");
  app.add_option("--grpc-address", grpc_address, "Address for gRPC (default 127.0.0.1)");
  app.add_option("--grpc-port", grpc_port, "gRPC port (default 8001; 0 disables)");
  app.add_option("--metrics-address", metrics_address, "Address for the metrics listener");
  app.add_option("--metrics-port", metrics_port,
                 "Metrics port (default: /metrics on the HTTP port; 0 disables)");
  app.add_option("--max-request-bytes", max_request,
                 "Largest request body accepted (default 64 MiB)");
  app.add_option("--max-inflight-bytes", max_inflight,
                 "Request and response bytes held at once per front end, past which requests "
                 "are refused with 503 (default: twice --max-request-bytes)");
  app.add_option("--http-thread-count", http_threads,
                 "Requests handled at once over HTTP (default 32)");
  app.add_option("--repository-poll-secs", poll_secs,
                 "Seconds between repository scans (default 1; 0: no watching)");
  app.add_option("--default-timeout-ms", timeout_ms,
                 "Per-request time limit when the request sets none (default 30000)");
  app.add_option("--intra-op-threads", intra_threads,
                 "ONNX Runtime threads per inference (default: cores)");
  app.add_option("--execution-providers", providers,
                 "ONNX Runtime execution providers in order of preference");
  app.add_option(
      "--update-url", update_url,
      "Update repository (TUF) URL; serves metadata/ and targets/. Default: updates off");
  app.add_option(
      "--update-root", update_root,
      "The update repository's initial root.json, trusted on first use of the repository");
  app.add_option("--update-state-dir", update_state_dir,
                 "Trusted update metadata and downloads (default <model-repository>/.updates)");
  app.add_option("--update-interval-secs", update_interval,
                 "Seconds between update checks, jittered by 20% (default 3600)");
  app.add_option("--update-canary-secs", update_canary,
                 "Canary window of a model update before it commits (default 30)");
  app.add_option("--pin-model", pinned, "Model that updates leave alone (repeatable)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error (default info)");
  app.add_option("--log-format", log_format, "text or json (default text)");
  app.add_flag("--print-config", print_config,
               "Print the effective configuration as JSON and exit");
  CLI11_PARSE(app, argc, argv);

  try {
    outpost::AgentConfig config;
    config.model_repository = DefaultRepository();
    config.trust_file = DefaultTrustFile();
    if (!config_file.empty()) {
      outpost::ApplyConfigJson(
          outpost::ParseJson(outpost::ReadFile(config_file),
                             outpost::JsonLimits::Document(4u << 20), config_file),
          config);
    }
    if (repository) config.model_repository = *repository;
    if (trust_file) config.trust_file = *trust_file;
    if (allow_unsigned) config.allow_unsigned_models = true;
    Override(http_address, config.http_address);
    Override(http_port, config.http_port);
    Override(grpc_address, config.grpc_address);
    Override(grpc_port, config.grpc_port);
    Override(metrics_address, config.metrics_address);
    Override(metrics_port, config.metrics_port);
    Override(max_request, config.max_request_bytes);
    Override(max_inflight, config.max_inflight_bytes);
    Override(http_threads, config.http_threads);
    Override(poll_secs, config.repository_poll_secs);
    Override(timeout_ms, config.default_timeout_ms);
    Override(intra_threads, config.intra_op_threads);
    Override(providers, config.execution_providers);
    Override(update_url, config.update_url);
    if (update_root) config.update_root = *update_root;
    if (update_state_dir) config.update_state_dir = *update_state_dir;
    Override(update_interval, config.update_interval_secs);
    Override(update_canary, config.update_canary_secs);
    Override(pinned, config.update_pinned_models);
    Override(log_level, config.log_level);
    Override(log_format, config.log_format);
    if (print_config) {
      std::cout << outpost::ToJson(config).dump(2) << "\n";
      return 0;
    }
    if (config.log_format != "text" && config.log_format != "json") {
      outpost::Fail(outpost::ErrorCode::kInvalidArgument, "--log-format must be text or json");
    }
    outpost::InitLogging(config.log_level, config.log_format == "json");

    // Signals are taken synchronously by this thread; every other thread inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    outpost::Agent agent(config);
    agent.Start();
#ifdef OUTPOST_HAVE_SYSTEMD
    sd_notify(0, "READY=1");
    // With WatchdogSec= set, systemd restarts the agent when these pings stop. A ping follows a
    // full health report, so an agent wedged on its own locks stops pinging.
    uint64_t watchdog_usec = 0;
    std::thread watchdog;
    std::atomic<bool> stopping{false};
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {
      watchdog = std::thread([&] {
        while (!stopping) {
          agent.Health();
          sd_notify(0, "WATCHDOG=1");
          for (uint64_t waited = 0; waited < watchdog_usec / 2 && !stopping; waited += 100000)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      });
    }
#endif
    outpost::Log(outpost::LogSeverity::kInfo, "agent", "ready",
                 std::string("outpostd ") + OUTPOST_VERSION + " ready");
    int sig = 0;
    sigwait(&signals, &sig);
    outpost::Log(outpost::LogSeverity::kInfo, "agent", "stopping",
                 "signal " + std::to_string(sig) + ": shutting down", {{"signal", sig}});
#ifdef OUTPOST_HAVE_SYSTEMD
    sd_notify(0, "STOPPING=1");
    stopping = true;
    if (watchdog.joinable()) watchdog.join();
#endif
    agent.Stop();
    return 0;
  } catch (const outpost::Error& e) {
    std::cerr << "outpostd: " << e.what() << "\n";
    return e.code() == outpost::ErrorCode::kInvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::cerr << "outpostd: " << e.what() << "\n";
    return 1;
  }
}
