// fleet/rollout: rollout states and their one transition function, and wave admission by
// counts (the first wave is never empty while any device is selected).
#include "fleet/rollout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>

#include "core/error.h"
#include "fleet/desired_state.h"

namespace outpost::fleet {
namespace {

std::vector<int64_t> Keys(const std::string& deployment, int devices) {
  std::vector<int64_t> keys;
  for (int i = 0; i < devices; ++i)
    keys.push_back(RolloutKey(deployment, "dev" + std::to_string(i)));
  return keys;
}

int Admitted(const std::vector<int64_t>& keys, int64_t bound) {
  return static_cast<int>(
      std::count_if(keys.begin(), keys.end(), [&](int64_t k) { return k < bound; }));
}

TEST(RolloutWaves, EachWaveAdmitsItsCountRoundedUpAndNeverNone) {
  for (int n : {1, 2, 6, 50, 1000}) {
    for (double percent : {1.0, 10.0, 50.0}) {
      auto keys = Keys("app", n);
      const int expected = std::max(1, static_cast<int>(std::ceil(percent * n / 100 - 1e-9)));
      EXPECT_EQ(Admitted(keys, WaveBound(keys, percent)), expected)
          << n << " devices, " << percent << " %";
    }
  }
  // 10 % of 1,000 is exactly 100, not 101 (0.1 has no exact binary form).
  auto keys = Keys("app", 1000);
  EXPECT_EQ(Admitted(keys, WaveBound(keys, 10)), 100);
}

TEST(RolloutWaves, NoDevicesNoAdmissionAndTheLastWaveTakesEveryone) {
  EXPECT_EQ(WaveBound({}, 1), 0);
  EXPECT_EQ(WaveBound({}, 50), 0);
  EXPECT_EQ(WaveBound({}, 100), std::numeric_limits<int64_t>::max());
  auto keys = Keys("app", 6);
  EXPECT_EQ(Admitted(keys, WaveBound(keys, 100)), 6);
  // ...and devices that enroll after the last wave opened.
  EXPECT_LT(RolloutKey("app", "late"), WaveBound(keys, 100));
}

TEST(RolloutWaves, LaterWavesHoldEveryoneEarlierWavesAdmitted) {
  auto keys = Keys("app", 50);
  int64_t previous = 0;
  std::set<int64_t> admitted;
  for (double percent : {1.0, 10.0, 50.0, 100.0}) {
    int64_t bound = WaveBound(keys, percent);
    EXPECT_GE(bound, previous);
    for (int64_t k : admitted) EXPECT_LT(k, bound);
    for (int64_t k : keys)
      if (k < bound) admitted.insert(k);
    previous = bound;
  }
  EXPECT_EQ(admitted.size(), 50u);
}

TEST(RolloutWaves, TheOrderDependsOnTheDeployment) {
  // Otherwise the same unlucky devices would be the canary of every deployment.
  auto a = Keys("app", 100), b = Keys("vision", 100);
  auto first = [](const std::vector<int64_t>& keys) {
    return std::min_element(keys.begin(), keys.end()) - keys.begin();
  };
  EXPECT_NE(first(a), first(b));
}

TEST(RolloutWaves, DesiredStateFollowsTheBound) {
  DeploymentView v;
  v.name = "app";
  v.selector = Selector::Parse(nlohmann::json::object());
  v.active_revision = 1;
  v.revisions[1] = {{"m", "1"}};
  v.revisions[2] = {{"m", "2"}};
  v.rollout_to = 2;
  auto keys = Keys("app", 6);
  v.admit_below = WaveBound(keys, 50);
  int on_new = 0;
  for (int i = 0; i < 6; ++i)
    on_new += ResolveDesiredState("dev" + std::to_string(i), {}, {v}).deployments.at("app") == 2;
  EXPECT_EQ(on_new, 3);
  // A new deployment (nothing active) reaches only admitted devices.
  v.active_revision = 0;
  v.admit_below = 0;
  EXPECT_TRUE(ResolveDesiredState("dev0", {}, {v}).packages.empty());
}

TEST(RolloutState, TheLegalMovesAndNoOthers) {
  using S = RolloutState;
  using E = RolloutEvent;
  struct Move {
    S from;
    E event;
    bool last_wave;
    std::optional<S> to;  // nullopt: refused
  };
  const Move moves[] = {
      {S::kRunning, E::kPause, false, S::kPaused},
      {S::kRunning, E::kResume, false, std::nullopt},
      {S::kRunning, E::kAdvance, false, S::kRunning},
      {S::kRunning, E::kAdvance, true, S::kCompleted},
      {S::kRunning, E::kPromote, false, S::kRunning},
      {S::kRunning, E::kPromote, true, S::kCompleted},
      {S::kRunning, E::kHalt, false, S::kRolledBack},
      {S::kRunning, E::kAbort, true, S::kAborted},
      {S::kPaused, E::kPause, false, std::nullopt},
      {S::kPaused, E::kResume, false, S::kRunning},
      {S::kPaused, E::kAdvance, false, std::nullopt},
      {S::kPaused, E::kPromote, false, S::kPaused},
      {S::kPaused, E::kPromote, true, S::kCompleted},
      {S::kPaused, E::kHalt, false, S::kRolledBack},
      {S::kPaused, E::kAbort, false, S::kAborted},
  };
  for (const auto& m : moves) {
    SCOPED_TRACE(std::string(RolloutStateName(m.from)) + " " +
                 std::string(RolloutEventName(m.event)) + (m.last_wave ? " (last wave)" : ""));
    if (m.to) {
      EXPECT_EQ(NextRolloutState(m.from, m.event, m.last_wave), *m.to);
    } else {
      EXPECT_THROW(NextRolloutState(m.from, m.event, m.last_wave), Error);
    }
  }
  for (S done : {S::kCompleted, S::kRolledBack, S::kAborted}) {
    for (E e : {E::kPause, E::kResume, E::kAdvance, E::kPromote, E::kHalt, E::kAbort}) {
      try {
        NextRolloutState(done, e, false);
        ADD_FAILURE() << RolloutStateName(done) << " moved on " << RolloutEventName(e);
      } catch (const Error& err) {
        EXPECT_EQ(err.code(), ErrorCode::kFailedPrecondition);
      }
    }
  }
}

TEST(RolloutState, NamesRoundTripAtTheStorageEdge) {
  for (auto s : {RolloutState::kRunning, RolloutState::kPaused, RolloutState::kCompleted,
                 RolloutState::kRolledBack, RolloutState::kAborted})
    EXPECT_EQ(ParseRolloutState(RolloutStateName(s)), s);
  EXPECT_EQ(ParseRolloutState("finished"), std::nullopt);
}

}  // namespace
}  // namespace outpost::fleet
