// Deployments (revisions of package sets aimed at tagged devices) and their staged rollouts.
//
// A rollout moves a deployment from revision A (what its devices have) to revision B in waves:
// each wave admits a count of the devices the deployment selects, in a stable order
// (fleet/rollout.h), and those get B. A wave is held for its soak time and until enough of its
// devices report B installed and healthy, then the next wave opens; when the last wave passes,
// B becomes what every device gets. An empty wave never passes. Past the failure
// threshold at any time (installs failed, a device unhealthy, error rate or latency over the
// limits), the rollout halts and every device goes back to A. Each step is one transaction
// under the rollout's row lock that advances `step` by one and records it, so a step is never
// lost with a replica that dies, and never taken twice by two replicas.
#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "core/json_fields.h"
#include "core/logging.h"
#include "core/names.h"
#include "fleet/fleet.h"
#include "fleet/rollout.h"

namespace outpost::fleet {

namespace {

const char* kRolloutColumns =
    "id, deployment, from_revision, to_revision, waves, soak_ms, max_failure_rate, "
    "min_success_rate, max_error_rate, max_latency_ms, state, wave, wave_started_ms, step, reason, "
    "created_ms, updated_ms, created_by, admit_below";

struct RolloutRow {
  int64_t id = 0;
  std::string deployment;
  int64_t from_revision = 0, to_revision = 0;
  std::vector<double> waves;
  Millis soak_ms = 0;
  double max_failure_rate = 0, min_success_rate = 0, max_error_rate = 0, max_latency_ms = 0;
  RolloutState state = RolloutState::kRunning;
  int64_t wave = 0;
  Millis wave_started_ms = 0;
  int64_t step = 0;
  std::string reason;
  Millis created_ms = 0, updated_ms = 0;
  std::string created_by;
  int64_t admit_below = 0;  // devices whose RolloutKey is below it get to_revision

  bool active() const { return IsActive(state); }
  bool last_wave() const { return static_cast<size_t>(wave) + 1 >= waves.size(); }
  double wave_percent() const { return waves.at(static_cast<size_t>(wave)); }
};

RolloutRow ReadRollout(const SqlRow& r) {
  RolloutRow o;
  o.id = r.Int(0);
  o.deployment = r.Text(1);
  o.from_revision = r.Int(2);
  o.to_revision = r.Int(3);
  o.waves = json::parse(r.Text(4)).get<std::vector<double>>();
  o.soak_ms = r.Int(5);
  o.max_failure_rate = r.Real(6);
  o.min_success_rate = r.Real(7);
  o.max_error_rate = r.Real(8);
  o.max_latency_ms = r.Real(9);
  auto state = ParseRolloutState(r.Text(10));
  if (!state) Fail(ErrorCode::kInternal, "rollout " + r.Text(0) + ": unknown state " + r.Text(10));
  o.state = *state;
  o.wave = r.Int(11);
  o.wave_started_ms = r.Int(12);
  o.step = r.Int(13);
  o.reason = r.Text(14);
  o.created_ms = r.Int(15);
  o.updated_ms = r.Int(16);
  o.created_by = r.Text(17);
  o.admit_below = r.Int(18);
  return o;
}

json ToJson(const RolloutRow& o) {
  return {{"id", o.id},
          {"deployment", o.deployment},
          {"from_revision", o.from_revision},
          {"to_revision", o.to_revision},
          {"waves", o.waves},
          {"soak_secs", o.soak_ms / 1000.0},
          {"max_failure_rate", o.max_failure_rate},
          {"min_success_rate", o.min_success_rate},
          {"max_error_rate", o.max_error_rate},
          {"max_latency_ms", o.max_latency_ms},
          {"state", RolloutStateName(o.state)},
          {"wave", o.wave},
          {"wave_percent", o.wave_percent()},
          {"wave_started_ms", o.wave_started_ms},
          {"step", o.step},
          {"reason", o.reason},
          {"created_ms", o.created_ms},
          {"updated_ms", o.updated_ms},
          {"created_by", o.created_by}};
}

// Defaults: waves of 1, 10, 50 and 100 %, five minutes of soak each, halt past 5 % failures,
// advance once 90 % of a wave reports success.
RolloutRow ParseRolloutSpec(const json& spec) {
  const JsonFields f(spec, "", "rollout");
  f.OnlyKeys({"waves", "soak_secs", "max_failure_rate", "min_success_rate", "max_error_rate",
              "max_latency_ms"});
  RolloutRow o;
  json waves = f.Get("waves", json::array({1, 10, 50, 100}));
  if (!waves.is_array() || waves.empty() || waves.size() > 20)
    Fail(ErrorCode::kInvalidArgument, "rollout.waves must list 1-20 percentages");
  double prev = 0;
  for (const auto& w : waves) {
    if (!w.is_number() || w.get<double>() <= prev || w.get<double>() > 100)
      Fail(ErrorCode::kInvalidArgument, "rollout.waves must be increasing percentages in (0, 100]");
    prev = w.get<double>();
    o.waves.push_back(prev);
  }
  if (o.waves.back() != 100) Fail(ErrorCode::kInvalidArgument, "the last wave must be 100");
  o.soak_ms = static_cast<Millis>(f.Number("soak_secs", 300, 0, 30 * 24 * 3600) * 1000);
  o.max_failure_rate = f.Number("max_failure_rate", 0.05, 0, 1);
  o.min_success_rate = f.Number("min_success_rate", 0.9, 0, 1);
  o.max_error_rate = f.Number("max_error_rate", 0.0, 0, 1);
  o.max_latency_ms = f.Number("max_latency_ms", 0.0, 0, 1e9);
  return o;
}

std::vector<DeploymentView> LoadViews(SqlConnection& c) {
  std::vector<DeploymentView> views;
  std::map<std::string, size_t> index;
  for (const auto& r : c.Query(
           "SELECT name, selector, priority, layered, active_revision FROM deployments ORDER BY "
           "name")) {
    DeploymentView v;
    v.name = r.Text(0);
    v.selector = Selector::Parse(json::parse(r.Text(1)));
    v.priority = r.Int(2);
    v.layered = r.Int(3) != 0;
    v.active_revision = r.Int(4);
    index[v.name] = views.size();
    views.push_back(std::move(v));
  }
  for (const auto& r : c.Query(fmt::format(
           "SELECT {} FROM rollouts WHERE state IN ('running', 'paused')", kRolloutColumns))) {
    RolloutRow o = ReadRollout(r);
    auto it = index.find(o.deployment);
    if (it == index.end()) continue;
    views[it->second].rollout_to = o.to_revision;
    views[it->second].admit_below = o.admit_below;
  }
  // The revisions anyone can get: the active one and a rollout's target.
  for (const auto& r :
       c.Query("SELECT r.deployment, r.revision, r.packages FROM deployment_revisions r JOIN "
               "deployments d ON d.name = r.deployment WHERE r.revision = d.active_revision OR "
               "r.revision IN (SELECT to_revision FROM rollouts o WHERE o.deployment = d.name AND "
               "o.state IN ('running', 'paused'))")) {
    auto it = index.find(r.Text(0));
    if (it == index.end()) continue;
    views[it->second].revisions[r.Int(1)] =
        json::parse(r.Text(2)).get<std::map<std::string, std::string>>();
  }
  return views;
}

double NumberOr(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0;
}

// A device the rollout selects: the deployment applies to it.
struct Member {
  std::string id;
  int64_t key = 0;  // RolloutKey
  bool healthy = true;
  std::string health;
};

// The devices the deployment of `o` applies to, whichever revision they get now.
std::vector<Member> SelectedDevices(SqlConnection& c, const RolloutRow& o,
                                    std::vector<DeploymentView> views) {
  for (auto& v : views) {
    if (v.name != o.deployment) continue;
    v.rollout_to = o.to_revision;  // as if admitted: does the deployment reach it at all?
    v.admit_below = std::numeric_limits<int64_t>::max();
  }
  std::vector<Member> out;
  for (const auto& r :
       c.Query("SELECT id, tags, healthy, health FROM devices WHERE revoked_ms IS NULL")) {
    json tags = json::parse(r.Text(1), nullptr, false);
    if (!tags.is_object()) continue;
    if (!ResolveDesiredState(r.Text(0), ParseTags(tags), views).deployments.count(o.deployment))
      continue;
    out.push_back({r.Text(0), RolloutKey(o.deployment, r.Text(0)), r.Int(2) != 0, r.Text(3)});
  }
  return out;
}

// The bound of the current wave over `members`: never below what was admitted before, so a
// device admitted once keeps the new revision as devices enroll.
int64_t CurrentBound(const RolloutRow& o, const std::vector<Member>& members) {
  std::vector<int64_t> keys;
  keys.reserve(members.size());
  for (const auto& m : members) keys.push_back(m.key);
  return std::max(o.admit_below, WaveBound(std::move(keys), o.wave_percent()));
}

// What the devices of a rollout's current wave report.
struct WaveProgress {
  int64_t selected = 0, devices = 0, succeeded = 0, failed = 0, pending = 0;
  std::vector<std::string> failures;  // a few device ids with why, for the record
  json ToJson() const {
    return {{"selected", selected}, {"devices", devices}, {"succeeded", succeeded},
            {"failed", failed},     {"pending", pending}, {"failures", failures}};
  }
};

WaveProgress MeasureWave(SqlConnection& c, const RolloutRow& o,
                         const std::vector<Member>& members) {
  std::map<std::string, std::pair<int64_t, std::string>> status;
  for (const auto& r :
       c.Query("SELECT device_id, revision, status, reason FROM device_status WHERE deployment = ?",
               {o.deployment}))
    status[r.Text(0)] = {r.Int(1), r.Text(2) + (r.Text(3).empty() ? "" : ": " + r.Text(3))};
  WaveProgress p;
  p.selected = static_cast<int64_t>(members.size());
  for (const Member& m : members) {
    if (m.key >= o.admit_below) continue;
    ++p.devices;
    auto s = status.find(m.id);
    if (s == status.end() || s->second.first != o.to_revision ||
        s->second.second.rfind("installing", 0) == 0) {
      ++p.pending;
      continue;
    }
    std::string why;
    if (s->second.second.rfind("failed", 0) == 0) {
      why = s->second.second;
    } else {
      json health = json::parse(m.health, nullptr, false);
      // Checked when reported (ParseDeviceReport); an older row that fails counts as 0.
      double error_rate = NumberOr(health, "error_rate"), latency = NumberOr(health, "latency_ms");
      if (!m.healthy) {
        why = "unhealthy";
      } else if (o.max_error_rate > 0 && error_rate > o.max_error_rate) {
        why = fmt::format("error rate {:.3g} over {:.3g}", error_rate, o.max_error_rate);
      } else if (o.max_latency_ms > 0 && latency > o.max_latency_ms) {
        why = fmt::format("mean latency {:.1f} ms over {:.1f}", latency, o.max_latency_ms);
      }
    }
    if (why.empty()) {
      ++p.succeeded;
    } else {
      ++p.failed;
      if (p.failures.size() < 10) p.failures.push_back(m.id + " (" + why + ")");
    }
  }
  return p;
}

// Inserts a running rollout from `from` to `to` with its first step and audit entry.
int64_t InsertRollout(const Database& db, SqlConnection& c, const Caller& caller,
                      const std::string& deployment, int64_t from, int64_t to,
                      const RolloutRow& o) {
  Millis now = Fleet::Now();
  auto ins = c.Query(
      "INSERT INTO rollouts (deployment, from_revision, to_revision, waves, soak_ms, "
      "max_failure_rate, min_success_rate, max_error_rate, max_latency_ms, state, wave, "
      "wave_started_ms, step, reason, created_ms, updated_ms, created_by) VALUES (?, ?, ?, ?, "
      "?, ?, ?, ?, ?, 'running', 0, ?, 1, '', ?, ?, ?) RETURNING id",
      {deployment, from, to, json(o.waves).dump(), o.soak_ms, o.max_failure_rate,
       o.min_success_rate, o.max_error_rate, o.max_latency_ms, now, now, now, caller.actor});
  int64_t id = ins[0].Int(0);
  // The first wave's devices, counted now that the rollout is there to resolve against.
  RolloutRow row = o;
  row.id = id;
  row.deployment = deployment;
  row.to_revision = to;
  row.wave = 0;
  row.admit_below = 0;
  const auto members = SelectedDevices(c, row, LoadViews(c));
  const int64_t bound = CurrentBound(row, members);
  c.Query("UPDATE rollouts SET admit_below = ? WHERE id = ?", {bound, id});
  json detail = {{"from_revision", from},
                 {"to_revision", to},
                 {"waves", o.waves},
                 {"selected", members.size()}};
  c.Query(
      "INSERT INTO rollout_steps (rollout_id, step, action, wave, time_ms, actor, detail) "
      "VALUES (?, 1, 'start', 0, ?, ?, ?)",
      {id, now, caller.actor, detail.dump()});
  detail["rollout"] = id;
  Audit(db, c, caller, "rollout.start", deployment, detail);
  return id;
}

int64_t ActiveRollouts(SqlConnection& c, const std::string& deployment) {
  return c.QueryInt(
      "SELECT COUNT(*) FROM rollouts WHERE deployment = ? AND state IN ('running', 'paused')",
      {deployment});
}

}  // namespace

std::shared_ptr<const std::vector<DeploymentView>> Fleet::Deployments() {
  std::lock_guard lock(cache_mu_);
  Millis now = Now();
  // Other replicas change deployments too: the generation counter says when to reload, and is
  // looked at no more often than every 200 ms.
  if (cached_ && now - cache_checked_ms_ < 200) return cached_;
  int64_t generation = 0;
  std::vector<DeploymentView> views;
  bool reload = false;
  db_.Read([&](SqlConnection& c) {
    generation = c.QueryInt(
        "SELECT CAST(value AS BIGINT) FROM fleet_meta WHERE key = 'deployments_generation'");
    reload = !cached_ || generation != cached_generation_;
    if (reload) views = LoadViews(c);
  });
  cache_checked_ms_ = now;
  if (reload) {
    cached_ = std::make_shared<const std::vector<DeploymentView>>(std::move(views));
    cached_generation_ = generation;
  }
  return cached_;
}

json Fleet::PutDeployment(const Caller& caller, const std::string& name, const json& body) {
  if (!IsValidModelName(name))
    Fail(ErrorCode::kInvalidArgument, "bad deployment name '" + name + "'");
  const JsonFields f(body, "deployment");
  f.OnlyKeys({"selector", "priority", "layered", "packages", "rollout"});
  Selector selector = Selector::Parse(f.Get("selector", json::object()));
  int64_t priority = f.Get("priority", int64_t{0});
  bool layered = f.Get("layered", false);
  Packages packages = ParsePackages(f.Get("packages", json()));
  std::optional<RolloutRow> rollout;
  if (body.contains("rollout")) rollout = ParseRolloutSpec(body["rollout"]);
  json packages_json = packages;
  json out;
  db_.Transact([&](SqlConnection& c) {
    Millis now = Now();
    auto rows = c.Query(
        fmt::format("SELECT active_revision, latest_revision FROM deployments WHERE name = ?{}",
                    db_.ForUpdate()),
        {name});
    int64_t active = rows.empty() ? 0 : rows[0].Int(0), latest = rows.empty() ? 0 : rows[0].Int(1);
    if (ActiveRollouts(c, name) > 0)
      Fail(ErrorCode::kFailedPrecondition,
           "a rollout of " + name + " is in progress: finish or abort it first");
    std::string latest_packages;
    if (latest > 0)
      latest_packages =
          c.Query("SELECT packages FROM deployment_revisions WHERE deployment = ? AND revision = ?",
                  {name, latest})[0]
              .Text(0);
    bool new_revision = latest == 0 || json::parse(latest_packages) != packages_json;
    int64_t revision = new_revision ? latest + 1 : latest;
    if (new_revision)
      c.Query(
          "INSERT INTO deployment_revisions (deployment, revision, packages, created_ms, "
          "created_by) VALUES (?, ?, ?, ?, ?)",
          {name, revision, packages_json.dump(), now, caller.actor});
    int64_t new_active = rollout || !new_revision ? active : revision;
    if (rows.empty()) {
      c.Query(
          "INSERT INTO deployments (name, selector, priority, layered, active_revision, "
          "latest_revision, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          {name, selector.ToJson().dump(), priority, layered, new_active, revision, now, now});
    } else {
      c.Query(
          "UPDATE deployments SET selector = ?, priority = ?, layered = ?, active_revision = ?, "
          "latest_revision = ?, updated_ms = ? WHERE name = ?",
          {selector.ToJson().dump(), priority, layered, new_active, revision, now, name});
    }
    Audit(db_, c, caller, rows.empty() ? "deployment.create" : "deployment.update", name,
          {{"selector", selector.ToJson()},
           {"priority", priority},
           {"layered", layered},
           {"packages", packages_json},
           {"revision", revision},
           {"active_revision", new_active}});
    out = {{"name", name}, {"revision", revision}, {"active_revision", new_active}};
    if (rollout && revision != active)
      out["rollout"] = InsertRollout(db_, c, caller, name, active, revision, *rollout);
    BumpGeneration(c);
  });
  std::lock_guard lock(cache_mu_);
  cache_checked_ms_ = 0;  // this replica sees its own change at once
  return out;
}

json Fleet::ListDeployments() {
  json out = json::array();
  db_.Read([&](SqlConnection& c) {
    for (const auto& r :
         c.Query("SELECT d.name, d.selector, d.priority, d.layered, d.active_revision, "
                 "d.latest_revision, d.updated_ms, r.packages FROM deployments d LEFT JOIN "
                 "deployment_revisions r ON r.deployment = d.name AND r.revision = "
                 "d.latest_revision ORDER BY d.priority DESC, d.name"))
      out.push_back({{"name", r.Text(0)},
                     {"selector", json::parse(r.Text(1))},
                     {"priority", r.Int(2)},
                     {"layered", r.Int(3) != 0},
                     {"active_revision", r.Int(4)},
                     {"latest_revision", r.Int(5)},
                     {"updated_ms", r.Int(6)},
                     {"latest_packages", json::parse(r.Text(7), nullptr, false)}});
  });
  return out;
}

json Fleet::GetDeployment(const std::string& name) {
  json out;
  db_.Read([&](SqlConnection& c) {
    auto rows = c.Query(
        "SELECT name, selector, priority, layered, active_revision, latest_revision, created_ms, "
        "updated_ms FROM deployments WHERE name = ?",
        {name});
    if (rows.empty()) Fail(ErrorCode::kNotFound, "no deployment " + name);
    const auto& r = rows[0];
    json revisions = json::array();
    for (const auto& v : c.Query(
             "SELECT revision, packages, created_ms, created_by FROM deployment_revisions WHERE "
             "deployment = ? ORDER BY revision",
             {name}))
      revisions.push_back({{"revision", v.Int(0)},
                           {"packages", json::parse(v.Text(1))},
                           {"created_ms", v.Int(2)},
                           {"created_by", v.Text(3)}});
    out = {{"name", r.Text(0)},           {"selector", json::parse(r.Text(1))},
           {"priority", r.Int(2)},        {"layered", r.Int(3) != 0},
           {"active_revision", r.Int(4)}, {"latest_revision", r.Int(5)},
           {"created_ms", r.Int(6)},      {"updated_ms", r.Int(7)},
           {"revisions", revisions}};
  });
  return out;
}

void Fleet::DeleteDeployment(const Caller& caller, const std::string& name) {
  db_.Transact([&](SqlConnection& c) {
    if (ActiveRollouts(c, name) > 0)
      Fail(ErrorCode::kFailedPrecondition, "a rollout of " + name + " is in progress");
    if (c.Query("DELETE FROM deployments WHERE name = ? RETURNING name", {name}).empty())
      Fail(ErrorCode::kNotFound, "no deployment " + name);
    Audit(db_, c, caller, "deployment.delete", name, json::object());
    BumpGeneration(c);
  });
  std::lock_guard lock(cache_mu_);
  cache_checked_ms_ = 0;
}

json Fleet::StartRollout(const Caller& caller, const std::string& deployment, const json& body) {
  // A rollout to the latest revision of an existing deployment: the same as putting it again
  // with a rollout section.
  json current = GetDeployment(deployment);
  if (current["latest_revision"] == current["active_revision"])
    Fail(ErrorCode::kFailedPrecondition,
         "every device already has the latest revision of " + deployment);
  RolloutRow o = ParseRolloutSpec(body);
  json out;
  db_.Transact([&](SqlConnection& c) {
    auto rows = c.Query(
        fmt::format("SELECT active_revision, latest_revision FROM deployments WHERE name = ?{}",
                    db_.ForUpdate()),
        {deployment});
    if (rows.empty()) Fail(ErrorCode::kNotFound, "no deployment " + deployment);
    if (ActiveRollouts(c, deployment) > 0)
      Fail(ErrorCode::kFailedPrecondition, "a rollout of " + deployment + " is in progress");
    int64_t from = rows[0].Int(0), to = rows[0].Int(1);
    int64_t id = InsertRollout(db_, c, caller, deployment, from, to, o);
    BumpGeneration(c);
    out = {{"rollout", id}, {"from_revision", from}, {"to_revision", to}};
  });
  std::lock_guard lock(cache_mu_);
  cache_checked_ms_ = 0;
  return out;
}

json Fleet::ListRollouts(const std::string& deployment) {
  json out = json::array();
  db_.Read([&](SqlConnection& c) {
    std::string sql = fmt::format("SELECT {} FROM rollouts", kRolloutColumns);
    std::vector<SqlArg> args;
    if (!deployment.empty()) {
      sql += " WHERE deployment = ?";
      args.emplace_back(deployment);
    }
    sql += " ORDER BY id DESC LIMIT 200";
    for (const auto& r : c.Query(sql, args)) out.push_back(ToJson(ReadRollout(r)));
  });
  return out;
}

json Fleet::GetRollout(int64_t id) {
  json out;
  db_.Read([&](SqlConnection& c) {
    auto rows = c.Query(fmt::format("SELECT {} FROM rollouts WHERE id = ?", kRolloutColumns), {id});
    if (rows.empty()) Fail(ErrorCode::kNotFound, fmt::format("no rollout {}", id));
    RolloutRow o = ReadRollout(rows[0]);
    out = ToJson(o);
    json steps = json::array();
    for (const auto& s :
         c.Query("SELECT step, action, wave, time_ms, actor, detail FROM rollout_steps WHERE "
                 "rollout_id = ? ORDER BY step",
                 {id}))
      steps.push_back({{"step", s.Int(0)},
                       {"action", s.Text(1)},
                       {"wave", s.Int(2)},
                       {"time_ms", s.Int(3)},
                       {"actor", s.Text(4)},
                       {"detail", json::parse(s.Text(5), nullptr, false)}});
    out["steps"] = steps;
    if (o.active())
      out["progress"] = MeasureWave(c, o, SelectedDevices(c, o, LoadViews(c))).ToJson();
  });
  return out;
}

namespace {

// Records step `o.step + 1` and moves the rollout to its new state; the WHERE on the old step
// makes a second writer with a stale view fail instead of repeating the step.
void TakeStep(const Database& db, SqlConnection& c, RolloutRow& o, const Caller& actor,
              const std::string& action, const json& detail) {
  Millis now = Fleet::Now();
  auto done = c.Query(
      "UPDATE rollouts SET state = ?, wave = ?, wave_started_ms = ?, step = ?, reason = ?, "
      "admit_below = ?, updated_ms = ? WHERE id = ? AND step = ? RETURNING id",
      {std::string(RolloutStateName(o.state)), o.wave, o.wave_started_ms, o.step + 1, o.reason,
       o.admit_below, now, o.id, o.step});
  if (done.empty()) throw SqlError(SqlError::Kind::kRetry, "rollout step raced; re-evaluating");
  ++o.step;
  c.Query(
      "INSERT INTO rollout_steps (rollout_id, step, action, wave, time_ms, actor, detail) VALUES "
      "(?, ?, ?, ?, ?, ?, ?)",
      {o.id, o.step, action, o.wave, now, actor.actor, detail.dump()});
  if (o.state == RolloutState::kCompleted)
    c.Query("UPDATE deployments SET active_revision = ?, updated_ms = ? WHERE name = ?",
            {o.to_revision, now, o.deployment});
  json audited = detail;
  audited["rollout"] = o.id;
  audited["step"] = o.step;
  Audit(db, c, actor, "rollout." + action, o.deployment, std::move(audited));
}

}  // namespace

json Fleet::ActOnRollout(const Caller& caller, int64_t id, const std::string& action) {
  std::optional<RolloutEvent> event;
  for (auto e :
       {RolloutEvent::kPromote, RolloutEvent::kPause, RolloutEvent::kResume, RolloutEvent::kAbort})
    if (RolloutEventName(e) == action) event = e;
  if (!event) Fail(ErrorCode::kInvalidArgument, "action must be promote, pause, resume or abort");
  json out;
  db_.Transact([&](SqlConnection& c) {
    auto rows = c.Query(
        fmt::format("SELECT {} FROM rollouts WHERE id = ?{}", kRolloutColumns, db_.ForUpdate()),
        {id});
    if (rows.empty()) Fail(ErrorCode::kNotFound, fmt::format("no rollout {}", id));
    RolloutRow o = ReadRollout(rows[0]);
    json detail = {{"from_wave", o.wave}};
    o.state = NextRolloutState(o.state, *event, o.last_wave());
    if (*event == RolloutEvent::kAbort) o.reason = "aborted by " + caller.actor;
    if (*event == RolloutEvent::kPromote) {
      if (o.state == RolloutState::kCompleted) {
        o.reason = "promoted past the last wave by " + caller.actor;
      } else {
        ++o.wave;
        o.wave_started_ms = Now();
        o.admit_below = CurrentBound(o, SelectedDevices(c, o, LoadViews(c)));
      }
    }
    TakeStep(db_, c, o, caller, action, detail);
    BumpGeneration(c);
    out = ToJson(o);
  });
  std::lock_guard lock(cache_mu_);
  cache_checked_ms_ = 0;
  return out;
}

bool Fleet::EvaluateRollout(SqlConnection& c, int64_t id) {
  auto rows = c.Query(
      fmt::format("SELECT {} FROM rollouts WHERE id = ?{}", kRolloutColumns, db_.ForUpdate()),
      {id});
  if (rows.empty()) return false;
  RolloutRow o = ReadRollout(rows[0]);
  if (!o.active()) return false;
  const auto members = SelectedDevices(c, o, LoadViews(c));
  // Devices enrolled since the wave opened may widen it (never narrow it).
  const int64_t bound = CurrentBound(o, members);
  const bool widened = bound != o.admit_below;
  if (widened) {
    c.Query("UPDATE rollouts SET admit_below = ? WHERE id = ?", {bound, o.id});
    o.admit_below = bound;
  }
  WaveProgress p = MeasureWave(c, o, members);
  Caller controller{"fleet:" + options_.replica, "rollout-controller", Scope::kAdmin, ""};
  double failure_rate =
      p.devices ? static_cast<double>(p.failed) / static_cast<double>(p.devices) : 0;
  if (p.failed > 0 && failure_rate > o.max_failure_rate) {
    o.state = NextRolloutState(o.state, RolloutEvent::kHalt, o.last_wave());
    o.reason = fmt::format("wave {} ({}%): {} of {} devices failed ({:.1f}% > {:.1f}%)", o.wave + 1,
                           o.wave_percent(), p.failed, p.devices, failure_rate * 100,
                           o.max_failure_rate * 100);
    TakeStep(db_, c, o, controller, "halt", {{"progress", p.ToJson()}, {"reason", o.reason}});
    Log(LogSeverity::kWarn, "fleet", "rollout_halted",
        fmt::format("rollout {} of {} halted and rolled back: {}", o.id, o.deployment, o.reason),
        {{"rollout", o.id}, {"deployment", o.deployment}});
    return true;
  }
  if (o.state != RolloutState::kRunning) return widened;
  // A wave without devices proves nothing: it waits for devices (or an operator's promote).
  if (p.devices == 0) return widened;
  Millis now = Now();
  double success_rate = static_cast<double>(p.succeeded) / static_cast<double>(p.devices);
  if (now - o.wave_started_ms < o.soak_ms || success_rate < o.min_success_rate) return widened;
  json detail = {{"progress", p.ToJson()}, {"from_wave", o.wave}};
  o.state = NextRolloutState(o.state, RolloutEvent::kAdvance, o.last_wave());
  if (o.state == RolloutState::kRunning) {
    ++o.wave;
    o.wave_started_ms = now;
    o.admit_below = CurrentBound(o, members);
    TakeStep(db_, c, o, controller, "advance", detail);
  } else {
    o.reason = fmt::format("all {} waves passed", o.waves.size());
    TakeStep(db_, c, o, controller, "complete", detail);
  }
  Log(LogSeverity::kInfo, "fleet", "rollout_step",
      fmt::format("rollout {} of {}: {} (wave {})", o.id, o.deployment, RolloutStateName(o.state),
                  o.wave + 1),
      {{"rollout", o.id}, {"deployment", o.deployment}});
  return true;
}

int Fleet::TickRollouts() {
  std::vector<int64_t> ids;
  db_.Read([&](SqlConnection& c) {
    for (const auto& r : c.Query("SELECT id FROM rollouts WHERE state IN ('running', 'paused')"))
      ids.push_back(r.Int(0));
  });
  int steps = 0;
  for (int64_t id : ids) {
    bool stepped = false;
    db_.Transact([&](SqlConnection& c) {
      stepped = EvaluateRollout(c, id);
      if (stepped) BumpGeneration(c);
    });
    steps += stepped;
  }
  if (steps > 0) {
    std::lock_guard lock(cache_mu_);
    cache_checked_ms_ = 0;
  }
  return steps;
}

}  // namespace outpost::fleet
