// One test per TUF threat the OTA issue names, at the metadata level: each refused with its
// own error, and the trusted set unchanged by a refusal.
#include "update/tuf.h"
#include "update/updater.h"

#include <gtest/gtest.h>

#include "core/atomic_file.h"
#include "core/error.h"

#include <unistd.h>

#include <filesystem>
#include "package/sha256.h"

namespace outpost::tuf {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

const Clock::time_point kNow = Clock::from_time_t(1'800'000'000);  // 2027-01-15

// A repository in memory: keys per role, and helpers that write each role's metadata.
struct Repo {
  std::map<std::string, std::vector<SigningKey>> keys;
  std::map<std::string, int> threshold = {
      {"root", 1}, {"targets", 1}, {"snapshot", 1}, {"timestamp", 1}};

  Repo() {
    for (const char* role : {"root", "targets", "snapshot", "timestamp"})
      keys[role] = {GenerateSigningKey(role)};
  }

  json RootSigned(int64_t version, Clock::time_point expires = kNow + 365 * 24h) const {
    json k = json::object(), roles = json::object();
    for (const auto& [role, list] : keys) {
      json ids = json::array();
      for (const auto& key : list) {
        k[KeyIdOf(key.pub.public_key)] = KeyJson(key.pub.public_key);
        ids.push_back(KeyIdOf(key.pub.public_key));
      }
      roles[role] = {{"keyids", ids}, {"threshold", threshold.at(role)}};
    }
    return {{"_type", "root"},
            {"spec_version", "1.0.31"},
            {"version", version},
            {"expires", FormatExpiry(expires)},
            {"consistent_snapshot", true},
            {"keys", k},
            {"roles", roles}};
  }

  static std::string Signed(const json& s, const std::vector<const SigningKey*>& by) {
    return SignEnvelope(s, by).dump();
  }
  std::vector<const SigningKey*> All(const std::string& role) const {
    std::vector<const SigningKey*> out;
    for (const auto& k : keys.at(role)) out.push_back(&k);
    return out;
  }

  std::string Root(int64_t version) const { return Signed(RootSigned(version), All("root")); }
  std::string Targets(int64_t version, Clock::time_point expires = kNow + 24h) const {
    json s = {
        {"_type", "targets"},
        {"spec_version", "1.0.31"},
        {"version", version},
        {"expires", FormatExpiry(expires)},
        {"targets",
         {{"model-1.0.0.opkg", {{"length", 42}, {"hashes", {{"sha256", std::string(64, 'a')}}}}}}}};
    return Signed(s, All("targets"));
  }
  std::string Snapshot(int64_t version, int64_t targets_version,
                       const std::string& targets_bytes = "",
                       Clock::time_point expires = kNow + 24h) const {
    json meta = {{"version", targets_version}};
    if (!targets_bytes.empty())
      meta["hashes"] = {{"sha256", Sha256Hex(targets_bytes)}},
      meta["length"] = targets_bytes.size();
    json s = {{"_type", "snapshot"},
              {"spec_version", "1.0.31"},
              {"version", version},
              {"expires", FormatExpiry(expires)},
              {"meta", {{"targets.json", meta}}}};
    return Signed(s, All("snapshot"));
  }
  std::string Timestamp(int64_t version, int64_t snapshot_version,
                        const std::string& snapshot_bytes = "",
                        Clock::time_point expires = kNow + 1h) const {
    json meta = {{"version", snapshot_version}};
    if (!snapshot_bytes.empty())
      meta["hashes"] = {{"sha256", Sha256Hex(snapshot_bytes)}},
      meta["length"] = snapshot_bytes.size();
    json s = {{"_type", "timestamp"},
              {"spec_version", "1.0.31"},
              {"version", version},
              {"expires", FormatExpiry(expires)},
              {"meta", {{"snapshot.json", meta}}}};
    return Signed(s, All("timestamp"));
  }
};

std::string Refusal(const std::function<void()>& f, ErrorCode code = ErrorCode::kPermissionDenied) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "accepted";
  return "";
}

TEST(Tuf, AcceptsAConsistentRepository) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  std::string targets = r.Targets(3), snapshot = r.Snapshot(2, 3, targets);
  t.UpdateTimestamp(r.Timestamp(5, 2, snapshot));
  t.UpdateSnapshot(snapshot);
  t.UpdateTargets(targets);
  EXPECT_EQ(t.targets()->targets.at("model-1.0.0.opkg").length, 42u);
  EXPECT_EQ(t.accepted().size(), 4u);
}

TEST(Tuf, ArbitraryPackageBadSignature) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  std::string targets = r.Targets(3), snapshot = r.Snapshot(2, 3);
  t.UpdateTimestamp(r.Timestamp(5, 2));
  t.UpdateSnapshot(snapshot);
  // Signed by the snapshot key, not a targets key: a forged target list.
  json forged = json::parse(targets);
  std::string canonical = CanonicalJson(forged["signed"]);
  forged["signatures"] = json::array({{{"keyid", KeyIdOf(r.keys["snapshot"][0].pub.public_key)},
                                       {"sig", ToHex(Sign(r.keys["snapshot"][0], canonical))}}});
  EXPECT_NE(Refusal([&] {
              t.UpdateTargets(forged.dump());
            }).find("0 of 1 required signatures from the targets role"),
            std::string::npos);
  // Right key, other bytes.
  json tampered = json::parse(targets);
  tampered["signed"]["targets"]["model-1.0.0.opkg"]["length"] = 43;
  EXPECT_NE(Refusal([&] { t.UpdateTargets(tampered.dump()); }).find("bad signature"),
            std::string::npos);
  EXPECT_FALSE(t.targets().has_value());
}

TEST(Tuf, RollbackOfEveryRole) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  t.UpdateTimestamp(r.Timestamp(5, 2));
  EXPECT_NE(Refusal([&] {
              t.UpdateTimestamp(r.Timestamp(4, 2));
            }).find("older than the trusted 5 (rollback)"),
            std::string::npos);
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(r.Timestamp(6, 1)); }).find("names snapshot version 1"),
            std::string::npos);
  EXPECT_EQ(t.timestamp()->version, 5);  // unchanged by the refusals
  // The next run: what was accepted before is loaded from the cache first, then the new
  // snapshot may not lower the version of targets.json.
  TrustedSet next(r.Root(1), kNow);
  next.UpdateTimestamp(r.Timestamp(5, 2, "", kNow - 1h),
                       /*from_cache=*/true);  // expired in the cache: fine
  next.UpdateTimestamp(r.Timestamp(6, 3));
  next.UpdateSnapshot(r.Snapshot(2, 7), /*from_cache=*/true);
  EXPECT_NE(Refusal([&] {
              next.UpdateSnapshot(r.Snapshot(3, 6));
            }).find("targets.json version 6 is older than the trusted 7"),
            std::string::npos);
  EXPECT_EQ(next.snapshot()->version, 2);
  next.UpdateSnapshot(r.Snapshot(3, 7));
  // Root: a root of the same or an older version.
  TrustedSet t4(r.Root(1), kNow);
  t4.UpdateRoot(r.Root(2));
  EXPECT_NE(Refusal([&] { t4.UpdateRoot(r.Root(2)); }).find("version 2 where 3 was expected"),
            std::string::npos);
  EXPECT_NE(Refusal([&] { t4.UpdateRoot(r.Root(1)); }).find("version 1 where 3 was expected"),
            std::string::npos);
}

TEST(Tuf, IndefiniteFreeze) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  EXPECT_NE(
      Refusal([&] { t.UpdateTimestamp(r.Timestamp(5, 2, "", kNow - 1s)); }).find("expired at"),
      std::string::npos);
  EXPECT_FALSE(t.timestamp().has_value());
  t.UpdateTimestamp(r.Timestamp(5, 2));
  EXPECT_NE(Refusal([&] { t.UpdateSnapshot(r.Snapshot(2, 3, "", kNow - 1s)); }).find("(freeze)"),
            std::string::npos);
  TrustedSet expired_root(Repo::Signed(r.RootSigned(1, kNow - 1s), r.All("root")), kNow);
  EXPECT_NE(
      Refusal([&] { expired_root.UpdateTimestamp(r.Timestamp(5, 2)); }).find("root v1 expired"),
      std::string::npos);
}

TEST(Tuf, MixAndMatch) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  std::string snapshot_v2 = r.Snapshot(2, 3), snapshot_v1 = r.Snapshot(1, 3);
  t.UpdateTimestamp(r.Timestamp(5, 2, snapshot_v2));
  // A validly signed snapshot, but not the one the timestamp vouches for.
  EXPECT_NE(Refusal([&] { t.UpdateSnapshot(snapshot_v1); }).find("mix-and-match"),
            std::string::npos);
  TrustedSet u(r.Root(1), kNow);
  u.UpdateTimestamp(r.Timestamp(5, 2));
  EXPECT_NE(Refusal([&] {
              u.UpdateSnapshot(snapshot_v1);
            }).find("version 1 but the timestamp names 2 (mix-and-match)"),
            std::string::npos);
  u.UpdateSnapshot(snapshot_v2);
  EXPECT_NE(
      Refusal([&] { u.UpdateTargets(r.Targets(2)); }).find("version 2 but the snapshot names 3"),
      std::string::npos);
  // Length declared by the snapshot: more bytes than signed for are refused (endless data).
  TrustedSet v(r.Root(1), kNow);
  std::string targets = r.Targets(3);
  std::string snapshot = r.Snapshot(2, 3, targets);
  v.UpdateTimestamp(r.Timestamp(5, 2, snapshot));
  v.UpdateSnapshot(snapshot);
  EXPECT_NE(Refusal([&] { v.UpdateTargets(targets + " "); }).find("bytes where"),
            std::string::npos);
}

TEST(Tuf, RootRotationAndACompromisedOldKey) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  Repo rotated = r;
  rotated.keys["root"] = {GenerateSigningKey("root2")};
  rotated.keys["timestamp"] = {GenerateSigningKey("timestamp2")};
  json v2 = rotated.RootSigned(2);
  // Only the new root key: the trusted (old) root's threshold is not met.
  EXPECT_NE(Refusal([&] {
              t.UpdateRoot(Repo::Signed(v2, rotated.All("root")));
            }).find("by the trusted root's keys"),
            std::string::npos);
  // Only the old key: the new root's own threshold is not met.
  EXPECT_NE(Refusal([&] { t.UpdateRoot(Repo::Signed(v2, r.All("root"))); }).find("by its own keys"),
            std::string::npos);
  std::vector<const SigningKey*> both = {&r.keys["root"][0], &rotated.keys["root"][0]};
  t.UpdateRoot(Repo::Signed(v2, both));
  EXPECT_EQ(t.root().version, 2);
  // The rotated-out timestamp key (say it was stolen) no longer counts.
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(r.Timestamp(9, 2)); }).find("not a timestamp key"),
            std::string::npos);
  t.UpdateTimestamp(rotated.Timestamp(9, 2));
}

TEST(Tuf, Thresholds) {
  Repo r;
  r.keys["targets"] = {GenerateSigningKey("t1"), GenerateSigningKey("t2"),
                       GenerateSigningKey("t3")};
  r.threshold["targets"] = 2;
  TrustedSet t(r.Root(1), kNow);
  t.UpdateTimestamp(r.Timestamp(1, 1));
  t.UpdateSnapshot(r.Snapshot(1, 1));
  json s = json::parse(r.Targets(1))["signed"];
  // One key twice is still one key.
  json twice = SignEnvelope(s, {&r.keys["targets"][0]});
  twice["signatures"].push_back(twice["signatures"][0]);
  EXPECT_NE(Refusal([&] { t.UpdateTargets(twice.dump()); }).find("1 of 2 required"),
            std::string::npos);
  t.UpdateTargets(SignEnvelope(s, {&r.keys["targets"][0], &r.keys["targets"][2]}).dump());
}

TEST(Tuf, MalformedMetadata) {
  Repo r;
  Refusal([&] { TrustedSet t("{", kNow); }, ErrorCode::kInvalidArgument);
  TrustedSet t(r.Root(1), kNow);
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(r.Targets(1)); }, ErrorCode::kInvalidArgument)
                .find("_type is 'targets'"),
            std::string::npos);
  json bad = json::parse(r.Timestamp(1, 1))["signed"];
  bad["expires"] = "tomorrow";
  std::string resigned = SignEnvelope(bad, r.All("timestamp")).dump();
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(resigned); }, ErrorCode::kInvalidArgument)
                .find("is not YYYY"),
            std::string::npos);
  // Fields are read only once the signatures hold: an edited, unsigned field is a signature
  // failure.
  json edited = json::parse(r.Timestamp(1, 1));
  edited["signed"]["expires"] = "tomorrow";
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(edited.dump()); }).find("bad signature"),
            std::string::npos);
}

// A repository as a map of file names, serving at most what the client will accept.
class MapFetcher : public Fetcher {
 public:
  std::map<std::string, std::string> files;
  std::map<std::string, uint64_t> asked;
  std::optional<std::string> Fetch(const std::string& name, uint64_t max_length) override {
    asked[name] = max_length;
    auto it = files.find(name);
    if (it == files.end()) return std::nullopt;
    if (it->second.size() > max_length)
      Fail(ErrorCode::kPermissionDenied, name + ": over " + std::to_string(max_length));
    return it->second;
  }
  void Publish(const Repo& r, int64_t ts, int64_t snap, int64_t targets_version) {
    std::string targets = r.Targets(targets_version),
                snapshot = r.Snapshot(snap, targets_version, targets);
    files[std::to_string(targets_version) + ".targets.json"] = targets;
    files[std::to_string(snap) + ".snapshot.json"] = snapshot;
    files["timestamp.json"] = r.Timestamp(ts, snap, snapshot);
  }
};

struct UpdaterTest : ::testing::Test {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("outpost-tuf-" + std::to_string(::getpid()));
  void SetUp() override { std::filesystem::remove_all(dir); }
  void TearDown() override { std::filesystem::remove_all(dir); }
};

TEST_F(UpdaterTest, RefreshesAndRemembersAcrossRuns) {
  Repo r;
  MapFetcher server;
  server.Publish(r, 5, 2, 3);
  Updater u(dir, server);
  u.Init(r.Root(1));
  EXPECT_NE(Refusal([&] { u.Init(r.Root(1)); }, ErrorCode::kFailedPrecondition)
                .find("already has a trusted root"),
            std::string::npos);
  auto set = u.Refresh(kNow);
  EXPECT_EQ(set.targets()->version, 3);
  EXPECT_TRUE(std::filesystem::exists(dir / "targets.json"));
  // Lengths the client asked for come from what signed metadata says.
  EXPECT_EQ(
      server.asked.at("2.snapshot.json"),
      json::parse(server.files["timestamp.json"])["signed"]["meta"]["snapshot.json"]["length"]);
  // Next run, the server rolls back to older, validly signed metadata: refused, nothing
  // overwritten.
  std::string trusted_timestamp = ReadFile(dir / "timestamp.json");
  server.Publish(r, 4, 1, 2);
  EXPECT_NE(Refusal([&] { u.Refresh(kNow); }).find("older than the trusted 5 (rollback)"),
            std::string::npos);
  EXPECT_EQ(ReadFile(dir / "timestamp.json"), trusted_timestamp);
  // A newer, consistent publication is accepted.
  server.Publish(r, 6, 3, 4);
  EXPECT_EQ(u.Refresh(kNow).targets()->version, 4);
}

TEST_F(UpdaterTest, RootRotationRecoversFromAFastForward) {
  Repo r;
  MapFetcher server;
  server.Publish(r, 5, 2, 3);
  Updater u(dir, server);
  u.Init(r.Root(1));
  u.Refresh(kNow);
  // A stolen timestamp key pushed a huge version to the device...
  server.Publish(r, 1'000'000, 2, 3);
  u.Refresh(kNow);
  // ...so the owners rotate the timestamp key (root v2, signed by old and new root keys) and
  // start over at version 1, which the device must now accept.
  Repo rotated = r;
  rotated.keys["timestamp"] = {GenerateSigningKey("timestamp2")};
  server.files["2.root.json"] = Repo::Signed(rotated.RootSigned(2), r.All("root"));
  server.Publish(rotated, 1, 3, 4);
  auto set = u.Refresh(kNow);
  EXPECT_EQ(set.root().version, 2);
  EXPECT_EQ(set.timestamp()->version, 1);
  EXPECT_EQ(set.targets()->version, 4);
}

TEST_F(UpdaterTest, EndlessDataAndMissingFiles) {
  Repo r;
  MapFetcher server;
  Updater u(dir, server);
  EXPECT_NE(Refusal([&] { u.Refresh(kNow); }, ErrorCode::kFailedPrecondition).find("init first"),
            std::string::npos);
  u.Init(r.Root(1));
  EXPECT_NE(Refusal([&] { u.Refresh(kNow); }, ErrorCode::kUnavailable).find("no timestamp.json"),
            std::string::npos);
  server.Publish(r, 5, 2, 3);
  server.files["timestamp.json"] += std::string(20000, ' ');  // over the 16 KiB timestamp limit
  EXPECT_NE(Refusal([&] { u.Refresh(kNow); }).find("over 16384"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "timestamp.json"));
}

}  // namespace
}  // namespace outpost::tuf
