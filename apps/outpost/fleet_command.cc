#include "fleet_command.h"
#include "repo_layout.h"

#include <httplib.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/credentials.h"
#include "fleet/audit.h"
#include "package/keys.h"

namespace outpost {
namespace {

using json = nlohmann::json;

struct FleetCli {
  std::string server, token, token_file;
  bool token_from_argv = false;
  bool json_out = false;
  std::vector<std::string> tags, packages, selector;
  std::string id, name, scope = "read", action;
  std::string model, version;
  std::string audit_state, online_pub;
  int64_t uses = 1, expires_in = 24 * 3600, priority = 0, after = 0;
  bool layered = false;
  std::vector<double> waves;
  double soak = -1, max_failure_rate = -1, min_success_rate = -1, max_error_rate = -1,
         max_latency_ms = -1;
  CLI::App* fleet = nullptr;
};

FleetCli& Opts() {
  static FleetCli o;
  return o;
}

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// One API call; exits 3 when the server cannot be reached, returns the status and body.
// `data` is sent as it is (signed metadata keeps its exact bytes).
std::pair<int, json> CallRaw(const std::string& method, const std::string& path,
                             const std::string& data,
                             const char* content_type = "application/json") {
  auto& o = Opts();
  httplib::Client client(o.server);
  client.set_connection_timeout(5);
  client.set_read_timeout(300);
  httplib::Headers headers;
  if (!o.token.empty()) headers.emplace("Authorization", "Bearer " + o.token);
  httplib::Result res = method == "GET"      ? client.Get(path, headers)
                        : method == "DELETE" ? client.Delete(path, headers)
                        : method == "PUT"    ? client.Put(path, headers, data, content_type)
                                             : client.Post(path, headers, data, content_type);
  if (!res) {
    std::cerr << "outpost: cannot reach the fleet server at " << o.server << ": "
              << httplib::to_string(res.error()) << "\n";
    std::exit(3);
  }
  json parsed = json::parse(res->body, nullptr, false);
  if (parsed.is_discarded()) parsed = json{{"error", res->body}};
  return {res->status, parsed};
}

std::pair<int, json> Call(const std::string& method, const std::string& path,
                          const json& body = nullptr) {
  return CallRaw(method, path, body.is_null() ? "" : body.dump());
}

// Prints the error and returns 1 unless the call succeeded.
int Check(const std::pair<int, json>& r) {
  if (r.first >= 200 && r.first < 300) return 0;
  std::cerr << "outpost: the fleet server answered " << r.first << ": "
            << r.second.value("error", r.second.dump()) << "\n";
  return 1;
}

std::string When(int64_t ms) {
  if (ms <= 0) return "never";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

std::string Pairs(const json& obj) {
  std::string out;
  if (!obj.is_object()) return out;
  for (const auto& [k, v] : obj.items()) {
    if (!out.empty()) out += ",";
    out += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

// "k=v" arguments to an object; `lists` makes "k=a,b" a list.
json ParsePairs(const std::vector<std::string>& items, const char* what, bool lists = false) {
  json out = json::object();
  for (const auto& item : items) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw CLI::ValidationError(what, "expected key=value, got '" + item + "'");
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (lists && value.find(',') != std::string::npos) {
      json values = json::array();
      for (size_t start = 0;;) {
        size_t comma = value.find(',', start);
        values.push_back(value.substr(start, comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      out[key] = values;
    } else {
      out[key] = value;
    }
  }
  return out;
}

int Print(const std::pair<int, json>& r, void (*text)(const json&)) {
  if (int rc = Check(r)) return rc;
  if (Opts().json_out) {
    std::cout << r.second.dump(2) << "\n";
  } else {
    text(r.second);
  }
  return 0;
}

void PrintDevices(const json& devices) {
  std::printf("%-22s %-9s %-10s %-20s %s\n", "DEVICE", "HEALTH", "AGENT", "LAST SEEN", "TAGS");
  for (const auto& d : devices)
    std::printf("%-22s %-9s %-10s %-20s %s\n", d.value("id", "").c_str(),
                d.value("revoked", false)  ? "revoked"
                : d.value("healthy", true) ? "healthy"
                                           : "unhealthy",
                d.value("agent_version", "").c_str(),
                When(d.value("last_seen_ms", int64_t{0})).c_str(), Pairs(d["tags"]).c_str());
}

void PrintRollouts(const json& rollouts) {
  std::printf("%-5s %-20s %-9s %-12s %-14s %s\n", "ID", "DEPLOYMENT", "REVISION", "STATE", "WAVE",
              "REASON");
  for (const auto& r : rollouts) {
    std::string revisions = std::to_string(r.value("from_revision", 0)) + "->" +
                            std::to_string(r.value("to_revision", 0));
    std::string wave = std::to_string(r.value("wave", 0) + 1) + "/" +
                       std::to_string(r["waves"].size()) + " (" +
                       json(r.value("wave_percent", 0.0)).dump() + "%)";
    std::printf("%-5lld %-20s %-9s %-12s %-14s %s\n", static_cast<long long>(r.value("id", 0)),
                r.value("deployment", "").c_str(), revisions.c_str(), r.value("state", "").c_str(),
                wave.c_str(), r.value("reason", "").c_str());
  }
}

// Where `audit verify` keeps the last signed head it saw of each server.
std::filesystem::path AuditStateFile() {
  if (!Opts().audit_state.empty()) return Opts().audit_state;
  const char* state = std::getenv("XDG_STATE_HOME");
  const char* home = std::getenv("HOME");
  std::filesystem::path dir = state && *state ? std::filesystem::path(state)
                              : home && *home ? std::filesystem::path(home) / ".local" / "state"
                                              : std::filesystem::path(".");
  return dir / "outpost" / "fleet-audit-heads.json";
}

// Fetches every audit entry and checks the chain here, so a server that lies about its own
// log is caught too. With a signed head (servers with an online key): its signature, its key
// (the one given, or the one seen first), its place in the chain, and the head kept from the
// last verification, whose entry must still be there unchanged: a database owner can rewrite
// the chain and its head, not the signatures a client already holds.
int VerifyAudit() {
  auto& o = Opts();
  std::optional<fleet::SignedAuditHead> head;
  auto signed_head = Call("GET", "/api/v1/audit/head");
  if (signed_head.first == 200) {
    head = fleet::SignedAuditHeadFromJson(signed_head.second);
  } else if (signed_head.first != 409) {  // 409: the server has no online key
    if (int rc = Check(signed_head)) return rc;
  }
  std::vector<fleet::AuditEntry> entries;
  for (int64_t after = 0;;) {
    auto r = Call("GET", "/api/v1/audit?after=" + std::to_string(after) + "&limit=5000");
    if (int rc = Check(r)) return rc;
    if (r.second.empty()) break;
    for (const auto& e : r.second) entries.push_back(fleet::AuditEntryFromJson(e));
    after = entries.back().seq;
  }
  fleet::AuditVerdict v = fleet::VerifyAuditChain(entries, std::nullopt);
  auto server = Call("GET", "/api/v1/audit/verify");
  if (v.ok && server.second.value("head_hash", "") != v.head_hash) {
    v.ok = false;
    v.problem = "the server's head " + server.second.value("head_hash", "") +
                " is not the end of the chain it sent";
  }
  const auto state_file = AuditStateFile();
  json state = json::object();
  if (std::filesystem::exists(state_file)) state = json::parse(ReadFile(state_file));
  std::optional<fleet::SignedAuditHead> earlier;
  if (state.contains(o.server)) earlier = fleet::SignedAuditHeadFromJson(state[o.server]);
  if (v.ok && head) {
    std::string pinned = earlier ? earlier->public_key : "";
    if (!o.online_pub.empty()) pinned = LoadPublicKey(o.online_pub).public_key;
    if (!fleet::VerifySignedAuditHead(*head)) {
      v.ok = false;
      v.problem = "the server's signed head does not verify";
    } else if (!pinned.empty() && head->public_key != pinned) {
      v.ok = false;
      v.problem = "the head is signed by key " + ToHex(head->public_key).substr(0, 16) +
                  ", not the server's online key " + ToHex(pinned).substr(0, 16);
    } else {
      fleet::CheckAgainstEarlierHead(entries, *head, v);
    }
  }
  if (v.ok && earlier) fleet::CheckAgainstEarlierHead(entries, *earlier, v);
  if (v.ok && head) {
    state[o.server] = fleet::ToJson(*head);
    std::filesystem::create_directories(state_file.parent_path());
    WriteFileAtomically(state_file, state.dump(2), 0600);
  }
  if (o.json_out) {
    json out = fleet::ToJson(v);
    if (head) out["signed_head"] = fleet::ToJson(*head);
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << fleet::Describe(v) << "\n";
    if (head && v.ok)
      std::cout << "head entry " << head->seq << " signed by the online key "
                << ToHex(head->public_key).substr(0, 16) << "; kept in " << state_file.string()
                << "\n";
    if (!head) std::cout << "(the server signs no audit head: it has no online key)\n";
  }
  return v.ok ? 0 : 1;
}

// Sends an update repository made offline (`outpost repo init/add`, signed with release keys)
// to the fleet server: new root versions, the target files (resumable, in chunks), then the
// latest targets metadata, which the server checks and publishes with its online signatures.
int Publish(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::path meta = fs::path(dir) / "metadata";
  const auto files = MetadataVersions(meta);
  auto versions = [&](const std::string& role) {
    auto it = files.find(role);
    return it == files.end() ? std::vector<int64_t>{} : it->second;
  };
  auto read = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  auto server_root = Call("GET", "/repo/metadata/root.json");
  int64_t have = server_root.first == 200 ? server_root.second["signed"].value("version", 0) : 0;
  for (int64_t v : versions("root")) {
    if (v <= have) continue;
    auto r =
        CallRaw("POST", "/api/v1/repository/root", read(meta / (std::to_string(v) + ".root.json")));
    if (int rc = Check(r)) return rc;
    std::cout << "root v" << v << " accepted\n";
  }
  auto targets_versions = versions("targets");
  if (targets_versions.empty())
    throw CLI::ValidationError("dir", "no N.targets.json in " + meta.string());
  std::string targets_bytes =
      read(meta / (std::to_string(targets_versions.back()) + ".targets.json"));
  constexpr size_t kChunk = 4u << 20;
  // Every target file a role lists, resumably, before the role's metadata is sent.
  auto upload = [&](const json& targets) -> int {
    for (const auto& [path, info] : targets.items()) {
      std::string file = info["hashes"]["sha256"].get<std::string>() + "." + path;
      auto st = Call("GET", "/api/v1/repository/uploads/" + file);
      if (int rc = Check(st)) return rc;
      if (st.second.value("published", false)) continue;
      std::ifstream f(fs::path(dir) / "targets" / file, std::ios::binary);
      if (!f) throw CLI::ValidationError("dir", "missing target file " + file);
      uint64_t offset = st.second.value("received", uint64_t{0});
      f.seekg(static_cast<std::streamoff>(offset));
      std::string chunk(kChunk, '\0');
      while (f.read(chunk.data(), kChunk) || f.gcount() > 0) {
        std::string part = chunk.substr(0, static_cast<size_t>(f.gcount()));
        auto res = CallRaw(
            "PUT", "/api/v1/repository/uploads/" + file + "?offset=" + std::to_string(offset), part,
            "application/octet-stream");
        if (res.first != 200) {
          std::cerr << "outpost: the upload of " << file << " stopped at byte " << offset << "\n";
          return Check(res);
        }
        offset += part.size();
      }
      std::cout << "uploaded " << path << " (" << offset << " bytes)\n";
    }
    return 0;
  };
  if (int rc = upload(json::parse(targets_bytes)["signed"]["targets"])) return rc;
  auto r = CallRaw("POST", "/api/v1/repository/targets", targets_bytes);
  if (int rc = Check(r)) return rc;
  std::cout << "published targets v" << r.second["targets_version"] << " (snapshot v"
            << r.second["snapshot_version"] << ", timestamp v" << r.second["timestamp_version"]
            << ", signed by the server)\n";
  // Then each delegated role's latest metadata (signed by its team), where newer than the
  // server's.
  std::map<std::string, int64_t> published;
  auto ts = Call("GET", "/repo/metadata/timestamp.json");
  if (ts.first == 200) {
    int64_t sv = ts.second["signed"]["meta"]["snapshot.json"].value("version", int64_t{0});
    auto snap = Call("GET", "/repo/metadata/" + std::to_string(sv) + ".snapshot.json");
    if (snap.first == 200)
      for (const auto& [file, info] : snap.second["signed"]["meta"].items())
        published[file] = info.value("version", int64_t{0});
  }
  for (const auto& [role, vs] : files) {
    if (IsTopLevelRole(role) || published[role + ".json"] >= vs.back()) continue;
    std::string bytes = read(meta / (std::to_string(vs.back()) + "." + role + ".json"));
    if (int rc = upload(json::parse(bytes)["signed"]["targets"])) return rc;
    auto rr = CallRaw("POST", "/api/v1/repository/roles/" + role, bytes);
    if (int rc = Check(rr)) return rc;
    std::cout << "published " << role << " v" << rr.second["role_version"] << " (snapshot v"
              << rr.second["snapshot_version"] << ")\n";
  }
  return 0;
}

json RolloutSpec() {
  auto& o = Opts();
  json spec = json::object();
  if (!o.waves.empty()) spec["waves"] = o.waves;
  if (o.soak >= 0) spec["soak_secs"] = o.soak;
  if (o.max_failure_rate >= 0) spec["max_failure_rate"] = o.max_failure_rate;
  if (o.min_success_rate >= 0) spec["min_success_rate"] = o.min_success_rate;
  if (o.max_error_rate >= 0) spec["max_error_rate"] = o.max_error_rate;
  if (o.max_latency_ms >= 0) spec["max_latency_ms"] = o.max_latency_ms;
  return spec;
}

void AddRolloutFlags(CLI::App* c) {
  auto& o = Opts();
  c->add_option("--waves", o.waves, "Wave percentages, e.g. 1,10,50,100")->delimiter(',');
  c->add_option("--soak", o.soak, "Seconds each wave soaks before the next (default 300)");
  c->add_option("--max-failure-rate", o.max_failure_rate, "Halt past this fraction failing (0.05)");
  c->add_option("--min-success-rate", o.min_success_rate,
                "Advance once this fraction of a wave succeeded (0.9)");
  c->add_option("--max-error-rate", o.max_error_rate, "A device over this error rate has failed");
  c->add_option("--max-latency-ms", o.max_latency_ms,
                "A device whose mean inference latency is over this has failed");
}

}  // namespace

void AddFleetCommand(CLI::App& app) {
  auto& o = Opts();
  o.server = Env("OUTPOST_FLEET_URL", "http://127.0.0.1:8500");
  o.token = Env("OUTPOST_FLEET_TOKEN", "");
  auto* f = app.add_subcommand("fleet", "Run a fleet through its fleet server");
  o.fleet = f;
  f->require_subcommand(1);
  f->add_option("--server", o.server, "Fleet server URL (or $OUTPOST_FLEET_URL)");
  f->add_option("--token-file", o.token_file,
                "File (0600) holding the operator token (or $OUTPOST_FLEET_TOKEN)");
  f->add_option_function<std::string>(
       "--token",
       [&o](const std::string& t) {
         o.token = t;
         o.token_from_argv = true;
       },
       "Operator token: visible to every user in the process list; prefer --token-file")
      ->type_name("TEXT");
  f->add_flag("--json", o.json_out, "Print JSON");

  auto* devices = f->add_subcommand("devices", "List devices");
  devices->add_option("--tag", o.tags, "Only devices with this tag (key=value; repeatable)");
  auto* device = f->add_subcommand("device", "Show one device, its deployments and desired state");
  device->add_option("id", o.id)->required();
  auto* tag = f->add_subcommand("tag", "Set a device's tags (replaces them)");
  tag->add_option("id", o.id)->required();
  tag->add_option("tags", o.tags, "key=value ...");
  auto* revoke = f->add_subcommand("revoke", "Revoke a device: its requests are refused at once");
  revoke->add_option("id", o.id)->required();
  auto* enroll = f->add_subcommand("enroll-token", "Make a one-time enrollment token");
  enroll->add_option("--tag", o.tags, "Tags for the devices that enroll with it (key=value)");
  enroll->add_option("--uses", o.uses, "How many devices may use it (default 1)");
  enroll->add_option("--expires-in", o.expires_in, "Seconds until it expires (default 86400)");

  auto* deploy = f->add_subcommand(
      "deploy", "Create or update a deployment (with --waves etc., as a staged rollout)");
  deploy->add_option("name", o.name)->required();
  deploy->add_option("--package", o.packages, "name=version (repeatable)")->required();
  deploy->add_option("--selector", o.selector, "key=value or key=a,b (repeatable; none: all)");
  deploy->add_option("--priority", o.priority, "Higher wins (default 0)");
  deploy->add_flag("--layered", o.layered, "A layer on top of the base deployment");
  AddRolloutFlags(deploy);
  f->add_subcommand("deployments", "List deployments");
  auto* rollout =
      f->add_subcommand("rollout", "Rollouts: list, show ID, promote|pause|resume|abort ID");
  rollout->add_option("action", o.action, "list, show, promote, pause, resume or abort")
      ->check(CLI::IsMember({"list", "show", "promote", "pause", "resume", "abort"}));
  rollout->add_option("id", o.id);
  auto* events = f->add_subcommand("events", "Drift and health events from devices");
  events->add_option("--model", o.model);
  events->add_option("--version", o.version);
  auto* audit = f->add_subcommand("audit", "The audit log; 'audit verify' checks its hash chain");
  audit->add_option("action", o.action)->check(CLI::IsMember({"list", "verify"}));
  audit->add_option("--after", o.after, "Entries after this sequence number");
  audit->add_option("--state", o.audit_state,
                    "Where verify keeps the last signed head per server (default "
                    "~/.local/state/outpost/fleet-audit-heads.json)");
  audit->add_option("--online-pub", o.online_pub,
                    "The server's online public key; without it, the key first seen is kept");
  auto* publish = f->add_subcommand(
      "publish", "Publish an offline-signed update repository (outpost repo) through the server");
  publish->add_option("dir", o.id, "The repository directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  auto* token = f->add_subcommand("token", "Make an operator token (admin)");
  token->add_option("--name", o.name)->required();
  token->add_option("--scope", o.scope, "read, write or admin (default read)");
}

int RunFleetCommand(CLI::App& app) {
  auto& o = Opts();
  if (!o.fleet || !o.fleet->parsed()) return -1;
  auto* f = o.fleet;
  (void)app;
  if (o.token_from_argv) WarnSecretOnCommandLine("--token", "--token-file or $OUTPOST_FLEET_TOKEN");
  if (!o.token_file.empty()) o.token = ReadSecretFile(o.token_file);
  if (f->got_subcommand("devices")) {
    std::string path = "/api/v1/devices?limit=10000";
    const json filter = ParsePairs(o.tags, "--tag");
    for (const auto& [k, v] : filter.items())
      path += "&tag=" + httplib::detail::encode_query_param(k + ":" + v.get<std::string>());
    return Print(Call("GET", path), PrintDevices);
  }
  if (f->got_subcommand("device"))
    return Print(Call("GET", "/api/v1/devices/" + o.id),
                 [](const json& d) { std::cout << d.dump(2) << "\n"; });
  if (f->got_subcommand("tag"))
    return Print(
        Call("PUT", "/api/v1/devices/" + o.id + "/tags", {{"tags", ParsePairs(o.tags, "tags")}}),
        [](const json& r) {
          std::cout << r["id"].get<std::string>() << ": " << Pairs(r["tags"]) << "\n";
        });
  if (f->got_subcommand("revoke"))
    return Print(Call("POST", "/api/v1/devices/" + o.id + "/revoke"), [](const json& r) {
      std::cout << "revoked " << r["revoked"].get<std::string>() << "\n";
    });
  if (f->got_subcommand("enroll-token"))
    return Print(Call("POST", "/api/v1/enrollment-tokens",
                      {{"tags", ParsePairs(o.tags, "--tag")},
                       {"uses", o.uses},
                       {"expires_in_secs", o.expires_in}}),
                 [](const json& r) {
                   std::cout << r["token"].get<std::string>() << "\n";
                   std::cerr << "enrollment token " << r["id"].get<std::string>() << ": "
                             << r["uses"] << " use(s), expires " << When(r["expires_ms"]) << "\n";
                 });
  if (f->got_subcommand("deploy")) {
    json body = {{"packages", ParsePairs(o.packages, "--package")},
                 {"selector", ParsePairs(o.selector, "--selector", true)},
                 {"priority", o.priority},
                 {"layered", o.layered}};
    json spec = RolloutSpec();
    if (!spec.empty()) body["rollout"] = spec;
    return Print(Call("PUT", "/api/v1/deployments/" + o.name, body), [](const json& r) {
      std::cout << r["name"].get<std::string>() << " revision " << r["revision"];
      if (r.contains("rollout")) std::cout << ": rollout " << r["rollout"] << " started";
      std::cout << "\n";
    });
  }
  if (f->got_subcommand("deployments"))
    return Print(Call("GET", "/api/v1/deployments"), [](const json& list) {
      std::printf("%-20s %-8s %-8s %-10s %-24s %s\n", "DEPLOYMENT", "PRIORITY", "LAYER", "REVISION",
                  "SELECTOR", "PACKAGES");
      for (const auto& d : list)
        std::printf("%-20s %-8lld %-8s %-10s %-24s %s\n", d.value("name", "").c_str(),
                    static_cast<long long>(d.value("priority", 0)),
                    d.value("layered", false) ? "yes" : "",
                    (std::to_string(d.value("active_revision", 0)) + "/" +
                     std::to_string(d.value("latest_revision", 0)))
                        .c_str(),
                    Pairs(d["selector"]).c_str(), Pairs(d["latest_packages"]).c_str());
    });
  if (f->got_subcommand("rollout")) {
    if (o.action.empty() || o.action == "list")
      return Print(Call("GET", "/api/v1/rollouts"), PrintRollouts);
    if (o.id.empty()) throw CLI::ValidationError("id", "this action needs a rollout id");
    if (o.action == "show")
      return Print(Call("GET", "/api/v1/rollouts/" + o.id), [](const json& r) {
        PrintRollouts(json::array({r}));
        if (r.contains("progress"))
          std::cout << "\ncurrent wave: " << r["progress"]["devices"] << " devices, "
                    << r["progress"]["succeeded"] << " succeeded, " << r["progress"]["failed"]
                    << " failed, " << r["progress"]["pending"] << " pending\n";
        std::cout << "\nsteps\n";
        for (const auto& s : r["steps"])
          std::cout << "  " << s["step"] << " " << When(s["time_ms"]) << " "
                    << s["action"].get<std::string>() << " (wave " << s["wave"].get<int>() + 1
                    << ") by " << s["actor"].get<std::string>() << "\n";
      });
    return Print(Call("POST", "/api/v1/rollouts/" + o.id + "/" + o.action),
                 [](const json& r) { PrintRollouts(json::array({r})); });
  }
  if (f->got_subcommand("events")) {
    std::string path = "/api/v1/events?limit=500";
    if (!o.model.empty()) path += "&model=" + httplib::detail::encode_query_param(o.model);
    if (!o.version.empty()) path += "&version=" + httplib::detail::encode_query_param(o.version);
    return Print(Call("GET", path), [](const json& list) {
      for (const auto& e : list)
        std::cout << When(e.value("time_ms", int64_t{0})) << "  " << e.value("event", "") << "  "
                  << e.value("model", "") << (e.value("version", "").empty() ? "" : "/")
                  << e.value("version", "") << "  " << e.value("device_id", "") << "  "
                  << (e["body"].is_object() ? e["body"].value("body", json("")).dump() : "")
                  << "\n";
    });
  }
  if (f->got_subcommand("audit")) {
    if (o.action == "verify") return VerifyAudit();
    return Print(Call("GET", "/api/v1/audit?limit=10000&after=" + std::to_string(o.after)),
                 [](const json& list) {
                   for (const auto& e : list)
                     std::cout << e["seq"] << "  " << When(e["time_ms"]) << "  "
                               << e["actor"].get<std::string>() << "  "
                               << e["action"].get<std::string>() << "  "
                               << e["target"].get<std::string>() << "  "
                               << e["source"].get<std::string>() << "\n";
                 });
  }
  if (f->got_subcommand("publish")) return Publish(o.id);
  if (f->got_subcommand("token"))
    return Print(Call("POST", "/api/v1/tokens", {{"name", o.name}, {"scope", o.scope}}),
                 [](const json& r) {
                   std::cout << r["token"].get<std::string>() << "\n";
                   std::cerr << "token " << r["id"].get<std::string>() << " ("
                             << r["scope"].get<std::string>()
                             << "): keep it secret, it is not shown again\n";
                 });
  return 2;
}

}  // namespace outpost
