// outpostd: the device agent. Embedded defaults < --config file < command-line flags.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
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

// Every key of the config schema as a flag; returns what applies the flags that were given.
std::vector<std::function<void(outpost::AgentConfig&)>> AddConfigFlags(CLI::App& app) {
  using outpost::FlagKind;
  const outpost::AgentConfig defaults;
  const nlohmann::json shown = outpost::ToJson(defaults);
  std::vector<std::function<void(outpost::AgentConfig&)>> apply;
  for (const auto& key : outpost::AgentConfigSchema().keys()) {
    std::string help = key.help;
    const auto& d = shown[key.name];
    if (!(d.is_string() && d.get<std::string>().empty()) && !(d.is_array() && d.empty()))
      help += " (default " + (d.is_string() ? d.get<std::string>() : d.dump()) + ")";
    switch (key.kind) {
      case FlagKind::kNone:
        break;
      case FlagKind::kSwitch: {
        auto value = std::make_shared<std::optional<bool>>();
        const std::string first = outpost::ConfigSchema<outpost::AgentConfig>::FirstFlag(key.flag);
        app.add_flag_function(
            key.flag + ",!--no-" + first.substr(2), [value](int64_t n) { *value = n > 0; }, help);
        apply.push_back([value, &key](outpost::AgentConfig& c) {
          if (*value) key.set_from_flag(c, {**value ? "true" : "false"});
        });
        break;
      }
      case FlagKind::kValue: {
        auto value = std::make_shared<std::optional<std::string>>();
        app.add_option(key.flag, *value, help)->type_name(key.type);
        apply.push_back([value, &key](outpost::AgentConfig& c) {
          if (*value) key.set_from_flag(c, {**value});
        });
        break;
      }
      case FlagKind::kRepeated: {
        auto values = std::make_shared<std::vector<std::string>>();
        CLI::Option* option = app.add_option(key.flag, *values, help);
        apply.push_back([values, option, &key](outpost::AgentConfig& c) {
          if (option->count() > 0) key.set_from_flag(c, *values);
        });
        break;
      }
    }
  }
  return apply;
}

}  // namespace

int main(int argc, char** argv) {
  outpost::UseServerAllocation();
  CLI::App app{"outpostd: serves signed ONNX models over KServe v2 (HTTP and gRPC) on this device"};
  std::string config_file;
  bool print_config = false;
  app.add_option("--config", config_file, "JSON config file (keys as in --print-config)")
      ->check(CLI::ExistingFile);
  app.add_flag("--print-config", print_config,
               "Print the effective configuration as JSON and exit");
  const auto apply_flags = AddConfigFlags(app);
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
    for (const auto& apply : apply_flags) apply(config);
    outpost::CheckAgentConfig(config);
    if (print_config) {
      std::cout << outpost::ToJson(config).dump(2) << "\n";
      return 0;
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
