#include "core/memory_budget.h"

#include <malloc.h>

#include "core/error.h"

namespace outpost {

bool MemoryBudget::TryCharge(uint64_t bytes) {
  const uint64_t limit = bytes <= kSmallCharge ? limit_ + limit_ / 16 : limit_;
  uint64_t used = used_.load();
  do {
    if (used + bytes > limit) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return true;
}

BudgetHold::~BudgetHold() {
  if (budget_) budget_->Release(bytes_);
}

void BudgetHold::Add(uint64_t bytes, const std::string& what) {
  if (!budget_) return;
  if (!budget_->TryCharge(bytes))
    Fail(ErrorCode::kResourceExhausted,
         what + " needs " + std::to_string(bytes) + " bytes and the server already holds " +
             std::to_string(budget_->used()) + " of its " + std::to_string(budget_->limit()) +
             " for requests; retry shortly");
  bytes_ += bytes;
}

void BudgetHold::AddDone(uint64_t bytes) {
  if (!budget_) return;
  budget_->Charge(bytes);
  bytes_ += bytes;
}

void ReturnFreedMemory() { malloc_trim(0); }

void UseServerAllocation() {
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
}

}  // namespace outpost
