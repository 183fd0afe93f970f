// core/memory_budget: bytes requests hold, with room kept for small ones.
#include "core/memory_budget.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace outpost {
namespace {

TEST(MemoryBudget, LargeChargesStopAtTheLimitSmallOnesHaveASixteenthMore) {
  MemoryBudget b(16u << 20);
  EXPECT_TRUE(b.TryCharge(10u << 20));
  EXPECT_FALSE(b.TryCharge(8u << 20));  // large: would pass 16 MiB
  EXPECT_TRUE(b.TryCharge(6u << 20));   // exactly to the limit
  EXPECT_FALSE(b.TryCharge(1u << 20));  // large again: none left
  // Small requests still fit, up to 1 MiB past the limit.
  int small = 0;
  while (b.TryCharge(MemoryBudget::kSmallCharge)) ++small;
  EXPECT_EQ(small, 16);
  b.Release(16u << 20);
  b.Release(16 * MemoryBudget::kSmallCharge);
  EXPECT_EQ(b.used(), 0u);
}

TEST(MemoryBudget, HoldsReleaseWhatTheyTookAndNameWhatDidNotFit) {
  MemoryBudget b(1000);
  {
    BudgetHold hold(&b);
    hold.Add(600, "decoding");
    try {
      hold.Add(600, "decoding the request");
      FAIL() << "over the limit";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
      EXPECT_NE(std::string(e.what()).find("decoding the request needs 600 bytes"),
                std::string::npos);
    }
    hold.AddDone(5000);  // work already done is charged whatever the limit
    EXPECT_EQ(b.used(), 5600u);
  }
  EXPECT_EQ(b.used(), 0u);
  BudgetHold none(nullptr);  // no budget: nothing to charge
  none.Add(1u << 30, "anything");
  EXPECT_EQ(none.bytes(), 0u);
}

}  // namespace
}  // namespace outpost
