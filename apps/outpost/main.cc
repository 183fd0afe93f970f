// outpost: the command line. Exit codes: 0 success, 1 the operation failed, 2 bad usage,
// 3 the agent could not be reached.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>

#include "agent_client.h"
#include "apikey_command.h"
#include "bench_command.h"
#include "core/error.h"
#include "core/names.h"
#include "fleet_command.h"
#include "infer_command.h"
#include "package_commands.h"
#include "repo_commands.h"
#include "runtime/capabilities.h"
#include "secret_command.h"
#include "tokenize_command.h"
#include "tpm/platform_security.h"
#include "update_command.h"

namespace {

using json = nlohmann::json;

std::string Bytes(uint64_t b) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f GiB", b / 1073741824.0);
  return buf;
}

int PrintInfo(bool as_json) {
  auto caps = outpost::DiscoverCapabilities(/*probe_providers=*/true);
  const auto security = outpost::tpm::ReadPlatformSecurity();
  if (as_json) {
    json j = outpost::ToJson(caps);
    j["security"] = outpost::tpm::ToJson(security);
    j["outpost_version"] = OUTPOST_VERSION;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "outpost        " << OUTPOST_VERSION << "\n"
            << "cpu            " << caps.cpu_model << " (" << caps.architecture << ", "
            << caps.logical_cores << " cores)\n"
            << "cpu features   ";
  for (const auto& f : caps.cpu_features) std::cout << f << " ";
  std::cout << "\nmemory         " << Bytes(caps.memory_total_bytes) << " total, "
            << Bytes(caps.memory_available_bytes) << " available\n"
            << "kernel         " << caps.kernel << "\n"
            << "onnxruntime    " << caps.onnxruntime_version << "\n"
            << "runtimes       onnx tflite (imported to ONNX)"
            << (caps.torch_version.empty() ? ""
                                           : " torchscript (libtorch " + caps.torch_version + ")")
            << "\nproviders\n";
  for (const auto& p : caps.providers)
    std::cout << "  " << (p.usable ? "usable    " : "unusable  ") << p.name
              << (p.usable ? "" : ": " + p.reason) << "\n";
  std::cout << "gpus           " << (caps.gpus.empty() ? "none" : "") << "\n";
  for (const auto& g : caps.gpus)
    std::cout << "  " << g.vendor << " " << g.name << " (" << g.path << ")\n";
  std::cout << "secure boot    " << security.secure_boot << "\n"
            << "lockdown       " << security.lockdown << "\n"
            << "tpm            "
            << (security.tpm_present ? security.tpm_manufacturer + " (" + security.tpm_tcti + ")"
                : security.tpm_error.empty() ? std::string("none")
                                             : "unusable: " + security.tpm_error)
            << "\n";
  return 0;
}

// GET from the agent; returns the parsed JSON body or exits with code 3 when unreachable.
json Get(const std::string& url, const std::string& path, int* status) {
  httplib::Client client = outpost::AgentClient(url);
  client.set_connection_timeout(3);
  client.set_read_timeout(10);
  auto res = client.Get(path);
  if (!res) {
    std::cerr << "outpost: cannot reach the agent at " << url << ": "
              << httplib::to_string(res.error()) << "\n";
    std::exit(3);
  }
  *status = res->status;
  auto j = json::parse(res->body, nullptr, false);
  return j.is_discarded() ? json{{"error", res->body}} : j;
}

void PrintIndex(const json& index) {
  printf("%-28s %-10s %-12s %s\n", "MODEL", "VERSION", "STATE", "REASON");
  for (const auto& e : index) {
    printf("%-28s %-10s %-12s %s\n", e.value("name", "").c_str(), e.value("version", "").c_str(),
           e.value("state", "").c_str(), e.value("reason", "").c_str());
  }
}

int PrintModels(const std::string& url, bool as_json) {
  int status = 0;
  json index = Get(url, "/v2/repository/index", &status);
  if (status != 200) {
    std::cerr << "outpost: the agent answered " << status << ": " << index.value("error", "")
              << "\n";
    return 1;
  }
  if (as_json) {
    std::cout << index.dump(2) << "\n";
    return 0;
  }
  PrintIndex(index);
  return 0;
}

// outpost models load|unload NAME: explicit model control (an admin credential).
int ControlModel(const std::string& url, const std::string& model, bool load, bool as_json) {
  if (!outpost::IsValidModelName(model)) {
    std::cerr << "outpost: '" << model << "' is not a model name\n";
    return 2;
  }
  httplib::Client client = outpost::AgentClient(url);
  client.set_connection_timeout(3);
  client.set_read_timeout(600);  // a load reads, verifies and warms the model up
  auto res = client.Post("/v2/repository/models/" + model + (load ? "/load" : "/unload"), "",
                         "application/json");
  if (!res) {
    std::cerr << "outpost: cannot reach the agent at " << url << ": "
              << httplib::to_string(res.error()) << "\n";
    return 3;
  }
  if (res->status != 200) {
    std::cerr << "outpost: " << outpost::AgentError(*res) << "\n";
    return 1;
  }
  json entries = json::parse(res->body, nullptr, false);
  if (as_json)
    std::cout << entries.dump(2) << "\n";
  else if (load)
    PrintIndex(entries);
  else
    std::cout << "unloaded " << model << "\n";
  return 0;
}

int PrintHealth(const std::string& url, bool as_json) {
  int live_status = 0, ready_status = 0;
  Get(url, "/v2/health/live", &live_status);
  Get(url, "/v2/health/ready", &ready_status);
  bool live = live_status == 200, ready = ready_status == 200;
  if (as_json) {
    std::cout << json{{"live", live}, {"ready", ready}}.dump(2) << "\n";
  } else {
    std::cout << "live  " << (live ? "yes" : "no") << "\nready " << (ready ? "yes" : "no") << "\n";
  }
  return live && ready ? 0 : 1;
}

// The agent's components (GET /v2/health): exit 0 when ready.
int PrintStatus(const std::string& url, bool as_json) {
  int status = 0;
  json report = Get(url, "/v2/health", &status);
  if (status != 200) {
    std::cerr << "outpost: the agent answered " << status << "\n";
    return 1;
  }
  if (as_json) {
    std::cout << report.dump(2) << "\n";
    return report.value("ready", false) ? 0 : 1;
  }
  std::cout << "ready          " << (report.value("ready", false) ? "yes" : "no") << "\n";
  for (const auto& [name, c] : report["components"].items()) {
    std::string state = c.value("state", "?");
    std::string detail = c.value("detail", "");
    printf("%-14s %-9s %s\n", name.c_str(), state.c_str(), detail.c_str());
  }
  const json& r = report["resources"];
  printf("resources      cpu %.0f %%, memory %s of %s available, disk %s free",
         r.value("cpu_busy", 0.0) * 100,
         Bytes(r.value("memory_available_bytes", uint64_t{0})).c_str(),
         Bytes(r.value("memory_total_bytes", uint64_t{0})).c_str(),
         Bytes(r.value("disk_free_bytes", uint64_t{0})).c_str());
  if (r.contains("temperature_c") && r["temperature_c"].is_number())
    printf(", %.0f °C", r["temperature_c"].get<double>());
  printf("%s\n", r.value("throttled", false) ? ", throttled" : "");
  return report.value("ready", false) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"outpost: the Outpost command line"};
  app.require_subcommand(1);
  std::string url = "http://127.0.0.1:8000";
  bool as_json = false;
  auto* info = app.add_subcommand(
      "info", "Show this device's capabilities (CPU, memory, ONNX Runtime, GPUs)");
  info->add_flag("--json", as_json, "Print JSON");
  auto* models =
      app.add_subcommand("models", "List the models a running agent serves, and why any is not");
  models->add_option("--url", url, "Agent URL")->capture_default_str();
  models->add_flag("--json", as_json, "Print JSON");
  std::string control_model;
  auto* load = models->add_subcommand("load", "Load a model (agents in explicit model control)");
  auto* unload = models->add_subcommand("unload", "Unload a model; its requests in flight finish");
  for (auto* c : {load, unload}) {
    c->add_option("model", control_model, "Model name")->required();
    c->add_option("--url", url, "Agent URL")->capture_default_str();
    c->add_flag("--json", as_json, "Print JSON");
  }
  auto* health = app.add_subcommand(
      "health", "Ask a running agent whether it is live and ready (exit 0 when both)");
  health->add_option("--url", url, "Agent URL")->capture_default_str();
  health->add_flag("--json", as_json, "Print JSON");
  auto* status = app.add_subcommand(
      "status", "A running agent's health by component, and the device's resources");
  status->add_option("--url", url, "Agent URL")->capture_default_str();
  status->add_flag("--json", as_json, "Print JSON");
  outpost::AddPackageCommands(app);
  outpost::AddInferCommand(app);
  outpost::AddRepoCommands(app);
  outpost::AddUpdateCommand(app);
  outpost::AddSecretCommand(app);
  outpost::AddTokenizeCommand(app);
  outpost::AddFleetCommand(app);
  outpost::AddApiKeyCommand(app);
  outpost::AddBenchCommand(app);
  CLI11_PARSE(app, argc, argv);
  try {
    if (int rc = outpost::RunPackageCommand(app); rc >= 0) return rc;
    if (int rc = outpost::RunInferCommand(app); rc >= 0) return rc;
    if (int rc = outpost::RunRepoCommand(app); rc >= 0) return rc;
    if (int rc = outpost::RunUpdateCommand(app); rc >= 0) return rc;
    if (int rc = outpost::RunSecretCommand(app); rc >= 0) return rc;
    if (int rc = outpost::RunTokenizeCommand(app); rc >= 0) return rc;
    if (int rc = outpost::RunFleetCommand(app); rc >= 0) return rc;
    if (int rc = outpost::RunApiKeyCommand(app); rc >= 0) return rc;
    if (int rc = outpost::RunBenchCommand(app); rc >= 0) return rc;
    if (*info) return PrintInfo(as_json);
    if (load->parsed() || unload->parsed())
      return ControlModel(url, control_model, load->parsed(), as_json);
    if (*models) return PrintModels(url, as_json);
    if (*health) return PrintHealth(url, as_json);
    if (*status) return PrintStatus(url, as_json);
  } catch (const std::exception& e) {
    std::cerr << "outpost: " << e.what() << "\n";
    return 1;
  }
  return 2;
}
