#include "apikey_command.h"

#include <iostream>

#include <nlohmann/json.hpp>

#include "agent_client.h"

namespace outpost {
namespace {

using json = nlohmann::json;

struct ApiKeyOptions {
  std::string url = "http://127.0.0.1:8000";
  std::vector<std::string> scopes;
  std::string name;
  uint64_t budget_tokens = 0;
  std::string id;
  bool as_json = false;
};
ApiKeyOptions& Opts() {
  static ApiKeyOptions o;
  return o;
}

std::string Join(const json& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n.get<std::string>();
  return out;
}

int Run(const std::string& command) {
  auto& o = Opts();
  httplib::Client client = AgentClient(o.url);
  client.set_connection_timeout(3);
  client.set_read_timeout(30);
  json body = {{"scopes", o.scopes}};
  if (!o.name.empty()) body["name"] = o.name;
  if (o.budget_tokens) body["budget_tokens"] = o.budget_tokens;
  httplib::Result res = command == "create"
                            ? client.Post("/v2/auth/keys", body.dump(), "application/json")
                        : command == "list" ? client.Get("/v2/auth/keys")
                                            : client.Delete("/v2/auth/keys/" + o.id);
  if (!res) {
    std::cerr << "outpost: cannot reach the agent at " << o.url << ": "
              << httplib::to_string(res.error()) << "\n";
    return 3;
  }
  if (res->status / 100 != 2) {
    std::cerr << "outpost: " << AgentError(*res) << "\n";
    return 1;
  }
  const json out = json::parse(res->body, nullptr, false);
  if (o.as_json || out.is_discarded()) {
    std::cout << (out.is_discarded() ? res->body : out.dump(2)) << "\n";
    return 0;
  }
  if (command == "create") {
    // The key alone on stdout, so that a script can capture it; it is shown only this once.
    std::cout << out.value("key", "") << "\n";
    std::cerr << "created " << out.value("id", "") << " (" << Join(out["scopes"])
              << "); store the key now: the agent keeps only its hash\n";
  } else if (command == "list") {
    for (const auto& k : out) {
      std::cout << k.value("id", "") << "  " << Join(k["scopes"])
                << (k.value("revoked", false) ? "  revoked" : "");
      if (k.contains("budget_tokens"))
        std::cout << "  cloud tokens today " << k.value("spent_tokens_today", 0ull) << "/"
                  << k.value("budget_tokens", 0ull);
      std::cout << "  " << k.value("created", "") << "  " << k.value("name", "") << "\n";
    }
  } else {
    std::cout << "revoked " << o.id << "\n";
  }
  return 0;
}

}  // namespace

void AddApiKeyCommand(CLI::App& app) {
  auto& o = Opts();
  auto* cmd = app.add_subcommand("apikey", "API keys of a running agent (needs the admin scope)");
  cmd->require_subcommand(1);
  auto* create = cmd->add_subcommand("create", "Make a key; prints it once on standard output");
  create->add_option("--scope", o.scopes, "inference, chat, cloud, admin or observe (repeat)")
      ->required();
  create->add_option("--name", o.name, "What the key is for");
  create->add_option("--budget-tokens", o.budget_tokens,
                     "Cloud LLM tokens the key may spend per day (0: no limit of its own)");
  auto* list = cmd->add_subcommand("list", "The keys, their scopes and budgets (never secrets)");
  auto* revoke = cmd->add_subcommand("revoke", "Revoke a key at once");
  revoke->add_option("id", o.id, "The key's id (opk_...)")->required();
  for (auto* c : {create, list, revoke}) {
    c->add_option("--url", o.url, "Agent URL")->capture_default_str();
    c->add_flag("--json", o.as_json, "Print JSON");
  }
}

int RunApiKeyCommand(CLI::App& app) {
  if (!app.got_subcommand("apikey")) return -1;
  auto* cmd = app.get_subcommand("apikey");
  for (const char* c : {"create", "list", "revoke"})
    if (cmd->got_subcommand(c)) return Run(c);
  return 2;
}

}  // namespace outpost
