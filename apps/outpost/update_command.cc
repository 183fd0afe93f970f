#include "update_command.h"
#include "agent_client.h"

#include <httplib.h>

#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

namespace outpost {
namespace {

using json = nlohmann::json;

struct UpdateOptions {
  std::string url = "http://127.0.0.1:8000";
  bool json_out = false;
  bool force = false;
};
UpdateOptions& Opts() {
  static UpdateOptions o;
  return o;
}

void PrintStatus(const json& s) {
  std::printf("state        %s\nlast check   %s (%s)\n", s.value("state", "").c_str(),
              s.value("last_check", "never").c_str(), s.value("last_result", "-").c_str());
  if (!s.value("last_error", "").empty())
    std::printf("last error   %s\n", s.value("last_error", "").c_str());
  if (!s.value("next_check", "").empty())
    std::printf("next check   %s\n", s.value("next_check", "").c_str());
  std::printf("\n%-24s %-10s %-10s %-10s %s\n", "MODEL", "COMMITTED", "PREVIOUS", "TRIAL",
              "LAST FAILURE");
  const json models = s.contains("models") ? s["models"] : json::object();
  for (const auto& [name, m] : models.items()) {
    std::printf("%-24s %-10s %-10s %-10s %s\n", name.c_str(), m.value("committed", "").c_str(),
                m.value("previous", "").c_str(), m.value("trial", "").c_str(),
                m.value("last_failure", "").c_str());
  }
  const json events = s.contains("events") ? s["events"] : json::array();
  if (!events.empty()) std::printf("\nrecent updates\n");
  for (const auto& e : events) {
    std::printf("  %-20s %-10s %-12s %8.1f s %10llu bytes%s %s\n", e.value("model", "").c_str(),
                e.value("version", "").c_str(), e.value("outcome", "").c_str(),
                e.value("seconds", 0.0),
                static_cast<unsigned long long>(e.value("bytes_downloaded", 0ull)),
                e.value("delta", false) ? " (delta)" : "", e.value("reason", "").c_str());
  }
}

int Call(bool check) {
  auto& o = Opts();
  httplib::Client client = AgentClient(o.url);
  client.set_connection_timeout(3);
  // A check runs whole updates (download, trial, canary window) before it answers.
  client.set_read_timeout(3600);
  auto res = check ? client.Post(std::string("/v2/updates/check") + (o.force ? "?force=true" : ""))
                   : client.Get("/v2/updates");
  if (!res) {
    std::cerr << "outpost: cannot reach the agent at " << o.url << ": "
              << httplib::to_string(res.error()) << "\n";
    return 3;
  }
  auto body = json::parse(res->body, nullptr, false);
  if (res->status != 200 || body.is_discarded()) {
    std::cerr << "outpost: the agent answered " << res->status << ": "
              << (body.is_discarded() ? res->body : body.value("error", res->body)) << "\n";
    return 1;
  }
  if (o.json_out) {
    std::cout << body.dump(2) << "\n";
  } else if (!body.value("enabled", false)) {
    std::cout << "updates are off (the agent has no update_url)\n";
  } else {
    PrintStatus(body);
  }
  if (!check) return 0;
  return body.value("last_result", "") == "ok" ? 0 : 1;
}

}  // namespace

void AddUpdateCommand(CLI::App& app) {
  auto& o = Opts();
  auto* update = app.add_subcommand("update", "Over-the-air updates of a running agent");
  update->require_subcommand(1);
  auto* check = update->add_subcommand(
      "check", "Check the update repository now and apply what it offers (exit 0 when it worked)");
  check->add_flag("--force", o.force, "Ignore maintenance windows and the metered-network pause");
  auto* status = update->add_subcommand("status", "Show slots, the last check and recent updates");
  for (auto* c : {check, status}) {
    c->add_option("--url", o.url, "Agent URL")->capture_default_str();
    c->add_flag("--json", o.json_out, "Print JSON");
  }
}

int RunUpdateCommand(CLI::App& app) {
  if (!app.got_subcommand("update")) return -1;
  return Call(app.get_subcommand("update")->got_subcommand("check"));
}

}  // namespace outpost
