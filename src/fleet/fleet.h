// The fleet server's logic, over a Database shared by any number of stateless replicas:
// operators and their tokens, device enrollment and identity, inventory, deployments and the
// desired state they resolve to, staged rollouts, telemetry intake and the audit trail.
// Every change is one transaction that also appends its audit entry. Nothing here knows HTTP.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet/audit.h"
#include "fleet/database.h"
#include "fleet/desired_state.h"
#include "fleet/identity.h"
#include "package/keys.h"

namespace outpost {
class WebhookSender;
}

namespace outpost::fleet {

using json = nlohmann::json;
using Millis = int64_t;  // Unix milliseconds

// The authenticated caller of one request.
struct Caller {
  std::string actor;  // "token:<name>" or "device:<id>"
  std::string source;
  Scope scope = Scope::kRead;
  std::string device_id;  // devices only
  std::string tags_json;  // devices only: their tags when the request was accepted
};

// Appends the audit entry of a change made by `who`, inside the change's transaction.
void Audit(const Database& db, SqlConnection& c, const Caller& who, std::string action,
           std::string target, json detail);

struct FleetOptions {
  std::string replica;            // names this server in rollout steps and logs
  std::string drift_webhook_url;  // retraining triggers: drift events are forwarded
  Millis max_enrollment_token_ms = 30LL * 24 * 3600 * 1000;
  // How long a telemetry batch id is remembered (a batch redelivered within it counts once)
  // and how long device events are kept: the database stays the size of these windows.
  Millis batch_retention_ms = 7LL * 24 * 3600 * 1000;
  Millis event_retention_ms = 30LL * 24 * 3600 * 1000;
  std::string repository_url;  // given to devices with their desired state
  // The update repository this server keeps (TUF): targets are signed offline by release keys
  // it never holds; it signs snapshot and timestamp with its online key. Replicas share the
  // metadata through the database and need the same directory (shared storage) for targets.
  std::filesystem::path repository_dir;  // empty: no repository
  std::optional<SigningKey> online_key;
  int online_expiry_days = 7;
};

// The signature headers of a device request.
struct DeviceSignature {
  std::string device_id;
  std::string time_ms;
  std::string signature_hex;
};

class Fleet {
 public:
  Fleet(Database& db, FleetOptions options);
  ~Fleet();

  static Millis Now();

  // --- operators ---------------------------------------------------------------------------
  // Throws Error(kUnauthenticated) for a missing, unknown or revoked token, kPermissionDenied for
  // one whose scope is below `needed`.
  Caller AuthenticateOperator(std::string_view authorization, const std::string& source,
                              Scope needed);
  // The first token, made by the server's own command line (actor "local").
  static json CreateTokenDirect(Database& db, const std::string& name, Scope scope,
                                const std::string& actor);
  json CreateToken(const Caller& caller, const json& body);
  json ListTokens();
  void RevokeToken(const Caller& caller, const std::string& id);

  // --- devices -----------------------------------------------------------------------------
  json CreateEnrollmentToken(const Caller& caller, const json& body);
  json Enroll(const json& body, const std::string& source);
  // Checks a device request's signature, freshness, order and the device's standing; records
  // it as seen. Throws Error(kUnauthenticated), or kPermissionDenied for a revoked device.
  Caller AuthenticateDevice(const DeviceSignature& sig, std::string_view method,
                            std::string_view path_and_query, std::string_view body,
                            const std::string& source);
  json ListDevices(const std::vector<std::pair<std::string, std::string>>& tag_filter,
                   const std::string& after, int64_t limit);
  json GetDevice(const std::string& id);
  json SetDeviceTags(const Caller& caller, const std::string& id, const json& body);
  void RevokeDevice(const Caller& caller, const std::string& id);
  json Report(const Caller& device, const json& body);
  DesiredState DesiredFor(const Caller& device);
  json DesiredStateBody(const DesiredState& state) const;

  // --- deployments and rollouts ------------------------------------------------------------
  json PutDeployment(const Caller& caller, const std::string& name, const json& body);
  json ListDeployments();
  json GetDeployment(const std::string& name);
  void DeleteDeployment(const Caller& caller, const std::string& name);
  json StartRollout(const Caller& caller, const std::string& deployment, const json& body);
  json ListRollouts(const std::string& deployment);
  json GetRollout(int64_t id);
  json ActOnRollout(const Caller& caller, int64_t id, const std::string& action);
  // Evaluates every running rollout once (any replica may; each step is taken once, under the
  // rollout's row lock). Returns the number of steps taken.
  int TickRollouts();

  // --- telemetry ---------------------------------------------------------------------------
  json IntakeOtlpLogs(const Caller& device, const json& body, const std::string& batch_id);
  json ListEvents(const std::string& model, const std::string& version, int64_t limit);
  // Forgets batch ids and events past their retention, and lets the engine keep its files
  // small (SQLite's WAL). Any replica may; returns the rows removed.
  int64_t Maintain();

  // --- the update repository ---------------------------------------------------------------
  json PutRoot(const Caller& caller, const std::string& bytes);
  // Appends a chunk to an upload of a target file (named <sha256>.<file>, as TUF's consistent
  // snapshots name it) at `offset`, which must be the size received so far.
  json UploadTarget(const Caller& caller, const std::string& file, uint64_t offset,
                    const std::string& chunk);
  json UploadStatus(const std::string& file);
  // Accepts targets metadata signed offline (threshold of the root's targets keys, version
  // above the current one, every target uploaded and matching its length and hash), then signs
  // a snapshot and timestamp for it with the online key.
  json PublishTargets(const Caller& caller, const std::string& bytes);
  json PublishRole(const Caller& caller, const std::string& role, const std::string& bytes);
  std::optional<std::string> RepositoryMetadata(const std::string& name);
  // Re-signs the timestamp when half its life is gone. True when it did.
  bool RefreshTimestamp();

  // --- audit -------------------------------------------------------------------------------
  json ListAudit(int64_t after, int64_t limit);
  AuditVerdict VerifyAudit();
  static AuditVerdict VerifyAudit(Database& db);
  // The current head, signed now with the online key. Throws Error(kFailedPrecondition)
  // without one.
  SignedAuditHead SignAuditHead();
  // Signs the head when it moved (every change appends an entry) or `interval` passed, and
  // writes it to the server's log, which lives apart from the database. True when it did.
  bool PublishAuditHead(Millis interval);

  Database& db() { return db_; }
  const FleetOptions& options() const { return options_; }

 private:
  void BumpGeneration(SqlConnection& c);
  std::shared_ptr<const std::vector<DeploymentView>> Deployments();
  json RolloutJson(const SqlRow& r) const;
  bool EvaluateRollout(SqlConnection& c, int64_t id);

  Database& db_;
  FleetOptions options_;
  int64_t published_seq_ = -1;  // PublishAuditHead: the last head logged, and when
  Millis published_at_ = 0;
  std::unique_ptr<WebhookSender> drift_webhook_;

  std::mutex cache_mu_;
  int64_t cached_generation_ = -1;
  Millis cache_checked_ms_ = 0;
  std::shared_ptr<const std::vector<DeploymentView>> cached_;
  std::atomic<Millis> pruned_ms_{0};
};

}  // namespace outpost::fleet
