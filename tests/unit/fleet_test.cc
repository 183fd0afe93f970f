// The fleet server's pure parts: selectors, desired-state resolution with layers, the audit
// chain's verification, and the SQL engines behind one interface (SQLite here;
// PostgreSQL in the integration tests).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "core/error.h"
#include "fleet/audit.h"
#include "fleet/database.h"
#include "fleet/desired_state.h"
#include "fleet/schema.h"

namespace outpost::fleet {
namespace {

using json = nlohmann::json;

DeploymentView View(std::string name, json selector, int64_t priority, bool layered,
                    Packages packages) {
  DeploymentView v;
  v.name = std::move(name);
  v.selector = Selector::Parse(selector);
  v.priority = priority;
  v.layered = layered;
  v.active_revision = 1;
  v.revisions[1] = std::move(packages);
  return v;
}

std::map<std::string, std::string> Versions(const DesiredState& s) {
  std::map<std::string, std::string> out;
  for (const auto& [name, p] : s.packages) out[name] = p.version;
  return out;
}

TEST(FleetSelector, MatchesEveryKeyAgainstAnyOfItsValues) {
  Selector s = Selector::Parse({{"site", "berlin"}, {"hw", {"pi4", "pi5"}}});
  EXPECT_TRUE(s.Matches({{"site", "berlin"}, {"hw", "pi5"}, {"extra", "x"}}));
  EXPECT_FALSE(s.Matches({{"site", "berlin"}, {"hw", "jetson"}}));
  EXPECT_FALSE(s.Matches({{"hw", "pi4"}}));
  EXPECT_TRUE(Selector::Parse(json::object()).Matches({}));
  EXPECT_THROW(Selector::Parse({{"site", json::array()}}), Error);
  EXPECT_THROW(Selector::Parse({{"bad key!", "x"}}), Error);
  EXPECT_THROW(Selector::Parse(json::array()), Error);
}

TEST(FleetDesiredState, HighestBaseWinsAndLayersApplyFromLowToHighPriority) {
  std::vector<DeploymentView> views = {
      View("base", json::object(), 0, false, {{"a", "1"}, {"b", "1"}}),
      View("site", {{"site", "berlin"}}, 10, false, {{"a", "2"}}),
      View("layer-low", json::object(), 1, true, {{"c", "1"}, {"b", "5"}}),
      View("layer-high", {{"hw", "pi5"}}, 2, true, {{"c", "2"}}),
  };
  DesiredState berlin = ResolveDesiredState("d1", {{"site", "berlin"}, {"hw", "pi5"}}, views);
  EXPECT_EQ(Versions(berlin),
            (std::map<std::string, std::string>{{"a", "2"}, {"b", "5"}, {"c", "2"}}));
  EXPECT_EQ(berlin.packages.at("c").deployment, "layer-high");
  EXPECT_EQ(berlin.deployments.count("base"), 0u);
  DesiredState paris = ResolveDesiredState("d2", {{"site", "paris"}}, views);
  EXPECT_EQ(Versions(paris),
            (std::map<std::string, std::string>{{"a", "1"}, {"b", "5"}, {"c", "1"}}));
  // The ETag follows the content, not the device.
  EXPECT_EQ(ResolveDesiredState("d3", {{"site", "paris"}}, views).etag, paris.etag);
  EXPECT_NE(berlin.etag, paris.etag);
}

std::vector<AuditEntry> Chain(int n) {
  std::vector<AuditEntry> out;
  std::string prev;
  for (int i = 1; i <= n; ++i) {
    AuditEntry e;
    e.seq = i;
    e.time_ms = 1000 + i;
    e.actor = "token:admin";
    e.action = "deployment.update";
    e.target = "app";
    e.detail = {{"revision", i}};
    e.source = "127.0.0.1";
    e.prev_hash = prev;
    e.hash = AuditHash(e);
    prev = e.hash;
    out.push_back(e);
  }
  return out;
}

TEST(FleetAudit, VerificationFindsEditsRemovalsAndTruncation) {
  auto chain = Chain(5);
  auto head = std::make_pair(int64_t{5}, chain.back().hash);
  EXPECT_TRUE(VerifyAuditChain(chain, head).ok);

  auto edited = chain;
  edited[2].detail["revision"] = 99;
  AuditVerdict v = VerifyAuditChain(edited, head);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 3);

  auto rehashed = edited;  // edited and rehashed: the next entry's link breaks
  rehashed[2].hash = AuditHash(rehashed[2]);
  v = VerifyAuditChain(rehashed, head);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 4);

  auto removed = chain;
  removed.erase(removed.begin() + 1);
  EXPECT_EQ(VerifyAuditChain(removed, head).first_bad_seq, 3);

  auto truncated = chain;
  truncated.pop_back();
  v = VerifyAuditChain(truncated, head);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problem.find("rows removed"), std::string::npos);
}

class SqliteDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("outpost-fleet-unit-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    db_ = Database::Open("sqlite:" + (dir_ / "fleet.db").string(), 4);
    Migrate(*db_);
    Migrate(*db_);  // a second start finds it current
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::unique_ptr<Database> db_;
};

TEST_F(SqliteDatabaseTest, TransactionsCommitOrRollBackWhole) {
  db_->Transact([](SqlConnection& c) {
    c.Query("INSERT INTO fleet_meta (key, value) VALUES (?, ?)", {"k1", "v1"});
  });
  EXPECT_THROW(db_->Transact([](SqlConnection& c) {
    c.Query("INSERT INTO fleet_meta (key, value) VALUES (?, ?)", {"k2", "v2"});
    Fail(ErrorCode::kInvalidArgument, "changed my mind");
  }),
               Error);
  int64_t n = 0;
  db_->Read([&](SqlConnection& c) {
    n = c.QueryInt("SELECT COUNT(*) FROM fleet_meta WHERE key IN ('k1', 'k2')");
  });
  EXPECT_EQ(n, 1);
  // A duplicate key is a conflict, told apart from other failures.
  try {
    db_->Transact([](SqlConnection& c) {
      c.Query("INSERT INTO fleet_meta (key, value) VALUES (?, ?)", {"k1", "again"});
    });
    FAIL() << "duplicate key accepted";
  } catch (const SqlError& e) {
    EXPECT_EQ(e.kind(), SqlError::Kind::kConflict);
  }
}

TEST_F(SqliteDatabaseTest, AuditAppendsChainAndTheTableRefusesEdits) {
  for (int i = 0; i < 3; ++i) {
    db_->Transact([&](SqlConnection& c) {
      AuditEntry e;
      e.time_ms = i;
      e.actor = "test";
      e.action = "thing.change";
      e.target = std::to_string(i);
      e.source = "unit";
      AppendAudit(*db_, c, e);
      EXPECT_EQ(e.seq, i + 1);
    });
  }
  db_->Read([&](SqlConnection& c) {
    auto entries = ReadAudit(c, 0, 100);
    ASSERT_EQ(entries.size(), 3u);
    AuditVerdict v = VerifyAuditChain(entries, AuditHead(c));
    EXPECT_TRUE(v.ok) << v.problem;
  });
  EXPECT_THROW(db_->Transact([](SqlConnection& c) { c.Query("DELETE FROM audit_log"); }), Error);
  EXPECT_THROW(db_->Transact([](SqlConnection& c) { c.Query("UPDATE audit_log SET actor = 'x'"); }),
               Error);
}

}  // namespace
}  // namespace outpost::fleet
