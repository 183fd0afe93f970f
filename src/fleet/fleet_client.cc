#include "fleet/fleet_client.h"

#include <optional>

#include <fmt/format.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/names.h"
#include "fleet/identity.h"
#include "net/http_client.h"
#include "package/sha256.h"

namespace outpost::fleet {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The ETag of a response header line ("ETag: v"), or nothing.
std::optional<std::string> Etag(std::string_view line) {
  constexpr std::string_view kEtag = "etag:";
  if (line.size() <= kEtag.size()) return std::nullopt;
  for (size_t i = 0; i < kEtag.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(line[i])) != kEtag[i]) return std::nullopt;
  std::string v(line.substr(kEtag.size()));
  while (!v.empty() && v.front() == ' ') v.erase(v.begin());
  while (!v.empty() && v.back() == ' ') v.pop_back();
  return v;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

FleetClient::FleetClient(FleetClientOptions options, FleetHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)) {
  fs::create_directories(options_.state_dir);
  fs::permissions(options_.state_dir, fs::perms::owner_all, fs::perm_options::replace);
  LoadIdentity();
  if (fs::exists(options_.state_dir / "desired.json")) {
    json d = json::parse(ReadFile(options_.state_dir / "desired.json"), nullptr, false);
    if (d.is_object()) desired_ = d;
    pending_ = !desired_.is_null();  // work towards it even before the server answers
  }
}

FleetClient::~FleetClient() { Stop(); }

void FleetClient::LoadIdentity() {
  fs::path id_file = options_.state_dir / "identity.json",
           key_file = options_.state_dir / "device.key";
  if (!fs::exists(id_file) || !fs::exists(key_file)) return;
  json id = json::parse(ReadFile(id_file), nullptr, false);
  if (!id.is_object() || !id.contains("device_id"))
    Fail(ErrorCode::kFailedPrecondition, "fleet: " + id_file.string() + " is damaged");
  RequirePrivateFile(key_file);
  key_ = LoadSigningKey(key_file);
  device_id_ = id["device_id"];
  // The server refuses a request time at or before the last one it accepted: after a restart
  // with a clock set back, the device continues from where it was.
  if (fs::exists(options_.state_dir / "last_request_ms")) {
    try {
      last_request_ms_ = std::stoll(ReadFile(options_.state_dir / "last_request_ms"));
    } catch (const std::exception&) {
    }
  }
}

FleetClient::Response FleetClient::Send(const std::string& method, const std::string& path,
                                        const std::string& body,
                                        const std::vector<std::string>& extra_headers) {
  std::lock_guard send(send_mu_);
  Response r;
  net::HttpRequest req;
  req.method = method;
  req.url = options_.url;
  while (!req.url.empty() && req.url.back() == '/') req.url.pop_back();
  req.url += path;
  req.headers = {"Content-Type: application/json"};
  if (key_ && !device_id_.empty()) {
    // Strictly increasing, so two requests in one millisecond are not taken for a replay.
    last_request_ms_ = std::max(NowMs(), last_request_ms_ + 1);
    std::string sig = ToHex(
        Sign(*key_, SigningString(method, path, device_id_, last_request_ms_, Sha256Hex(body))));
    req.headers.push_back("X-Outpost-Device: " + device_id_);
    req.headers.push_back("X-Outpost-Time: " + std::to_string(last_request_ms_));
    req.headers.push_back("X-Outpost-Signature: " + sig);
  }
  for (const auto& h : extra_headers) req.headers.push_back(h);
  if (method != "GET") req.body = body;
  req.max_response_bytes = 8u << 20;
  req.on_header = [&r](std::string_view line) {
    if (auto etag = Etag(line)) r.etag = *etag;
  };
  net::HttpResponse res = net::Perform(req);
  r.body = std::move(res.body);
  if (res.error.empty()) {
    r.status = res.status;
    if (key_ && !device_id_.empty() && r.status != 401) {
      try {
        WriteFileAtomically(options_.state_dir / "last_request_ms",
                            std::to_string(last_request_ms_), 0600);
      } catch (const std::exception&) {
      }
    }
  } else {
    r.error = res.error;
  }
  return r;
}

void FleetClient::Enroll() {
  if (options_.enrollment_token.empty())
    Fail(ErrorCode::kFailedPrecondition,
         "fleet: not enrolled and no enrollment token (fleet_enrollment_token)");
  SigningKey key = GenerateSigningKey("device");
  std::string pub = ToHex(key.pub.public_key);
  json body = {
      {"token", options_.enrollment_token},
      {"public_key", pub},
      {"signature", ToHex(Sign(key, EnrollmentSigningString(options_.enrollment_token, pub)))},
      {"capabilities", options_.capabilities},
      {"agent_version", options_.agent_version}};
  Response r = Send("POST", "/api/v1/enroll", body.dump());
  if (r.status != 201) {
    json err = json::parse(r.body, nullptr, false);
    std::string why = r.status == 0     ? r.error
                      : err.is_object() ? err.value("error", r.body)
                                        : r.body;
    Fail(r.status == 0 ? ErrorCode::kUnavailable : ErrorCode::kPermissionDenied,
         fmt::format("fleet: enrollment refused ({}): {}", r.status, why));
  }
  std::string id = json::parse(r.body).at("device_id");
  // The key first: an identity without its key would be useless after a crash.
  fs::path key_file = options_.state_dir / "device.key",
           pub_file = options_.state_dir / "device.pub";
  fs::remove(key_file);
  fs::remove(pub_file);
  SaveSigningKey(key, key_file, pub_file);
  WriteFileAtomically(options_.state_dir / "identity.json",
                      json({{"device_id", id}, {"server", options_.url}}).dump(2) + "\n", 0600);
  std::lock_guard send(send_mu_);
  key_ = std::move(key);
  device_id_ = id;
  Log(LogSeverity::kInfo, "fleet", "enrolled", "enrolled with the fleet server as " + id,
      {{"device_id", id}});
}

json FleetClient::DeploymentsReport(const json& desired, const json& applied) {
  json out = json::object();
  if (!desired.is_object()) return out;
  const json deployments = desired.value("deployments", json::object()),
             packages = desired.value("packages", json::object());
  for (const auto& [name, revision] : deployments.items()) {
    std::string status = "installed", reason;
    for (const auto& [pkg, p] : packages.items()) {
      if (p.value("deployment", "") != name) continue;
      json a = applied.is_object() && applied.contains(pkg) ? applied[pkg] : json::object();
      std::string s = a.value("status", "installing");
      if (s == "failed") {
        status = "failed";
        reason += (reason.empty() ? "" : "; ") + pkg + ": " + a.value("reason", "");
      } else if (s == "installing" && status != "failed") {
        status = "installing";
      }
    }
    out[name] = {{"revision", revision}, {"status", status}, {"reason", reason}};
  }
  return out;
}

bool FleetClient::PollOnce() {
  auto fail = [&](const std::string& why) {
    std::lock_guard lock(mu_);
    if (last_error_ != why) Log(LogSeverity::kWarn, "fleet", "poll_failed", "fleet: " + why, {});
    last_error_ = why;
    return false;
  };
  try {
    if (!key_) Enroll();
  } catch (const Error& e) {
    return fail(e.what());
  }
  std::string etag = desired_.is_object() ? desired_.value("etag", "") : "";
  Response r = Send("GET", "/api/v1/device/desired-state", "",
                    etag.empty() ? std::vector<std::string>{}
                                 : std::vector<std::string>{"If-None-Match: " + etag});
  if (r.status == 0) return fail("cannot reach " + options_.url + ": " + r.error);
  bool changed = false;
  if (r.status == 200) {
    json d = json::parse(r.body, nullptr, false);
    if (!d.is_object() || !d.contains("packages")) return fail("the desired state is malformed");
    if (d.contains("poll_secs") && d["poll_secs"].is_number() && d["poll_secs"].get<double>() >= 1)
      options_.poll =
          std::chrono::milliseconds(static_cast<int64_t>(d["poll_secs"].get<double>() * 1000));
    changed = !desired_.is_object() || desired_.value("etag", "") != d.value("etag", "");
    desired_ = d;
    WriteFileAtomically(options_.state_dir / "desired.json", d.dump() + "\n", 0600);
  } else if (r.status != 304) {
    json err = json::parse(r.body, nullptr, false);
    return fail(fmt::format("the fleet server answered {}: {}", r.status,
                            err.is_object() ? err.value("error", r.body) : r.body));
  }
  if ((changed || pending_) && desired_.is_object() && hooks_.reconcile) {
    std::map<std::string, std::string> wanted;
    for (const auto& [name, p] : desired_["packages"].items())
      if (IsValidModelName(name) && p.is_object() && p.value("version", "") != "")
        wanted[name] = p.value("version", "");
    applied_ = hooks_.reconcile(wanted);
    pending_ = false;
    for (const auto& [name, a] : applied_.items())
      if (a.value("status", "") == "installing") pending_ = true;
    changed = true;
  }
  // Report after a change, and every tenth round so health and last-seen stay fresh.
  if (changed || ++polls_ % 10 == 0) {
    json report = {{"agent_version", options_.agent_version},
                   {"models", hooks_.models ? hooks_.models() : json::object()},
                   {"health", hooks_.health ? hooks_.health() : json::object()},
                   {"deployments", DeploymentsReport(desired_, applied_)}};
    Response rep = Send("POST", "/api/v1/device/report", report.dump());
    if (rep.status != 200)
      return fail(fmt::format("report not accepted ({}): {}", rep.status,
                              rep.status ? rep.body : rep.error));
  }
  std::lock_guard lock(mu_);
  last_error_.clear();
  last_poll_ = FormatLocalNow("%Y-%m-%dT%H:%M:%S");
  return true;
}

long FleetClient::PostSigned(const std::string& path, const std::string& body,
                             const std::vector<std::string>& headers, std::string* answer) {
  {
    std::lock_guard send(send_mu_);
    if (!key_) {
      *answer = "not enrolled with the fleet server yet";
      return 0;
    }
  }
  Response r = Send("POST", path, body, headers);
  *answer = r.status ? r.body : r.error;
  return r.status;
}

json FleetClient::Status() const {
  std::string id;
  bool enrolled = false;
  {
    std::lock_guard send(send_mu_);
    id = device_id_;
    enrolled = key_.has_value();
  }
  std::lock_guard lock(mu_);
  return {{"server", options_.url},  {"device_id", id},           {"enrolled", enrolled},
          {"last_poll", last_poll_}, {"last_error", last_error_}, {"desired", desired_},
          {"applied", applied_}};
}

void FleetClient::Start() {
  thread_ = std::thread([this] { Run(); });
}

void FleetClient::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FleetClient::Run() {
  auto failures = 0;
  for (;;) {
    bool ok = false;
    try {
      ok = PollOnce();
    } catch (const std::exception& e) {
      Log(LogSeverity::kError, "fleet", "poll_failed", std::string("fleet: ") + e.what());
    }
    failures = ok ? 0 : std::min(failures + 1, 6);
    // The interval +- jitter, so a fleet does not poll in step; after failures, sooner at
    // first (1 s doubling) but never later than the interval.
    double base = static_cast<double>(options_.poll.count());
    if (failures > 0) base = std::min(base, 1000.0 * (1 << (failures - 1)));
    std::uniform_real_distribution<double> spread(1 - options_.jitter, 1 + options_.jitter);
    auto wait = std::chrono::milliseconds(static_cast<int64_t>(base * spread(rng_)));
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, wait, [&] { return stop_; })) return;
  }
}

}  // namespace outpost::fleet
