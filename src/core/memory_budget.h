// Bytes that requests hold at once, across every front end of a process: request bodies,
// decoded tensors, outputs and responses are charged here while they live, and a request whose
// next charge would pass the limit is refused (HTTP 503, gRPC RESOURCE_EXHAUSTED) instead of
// growing the process. Work already done is charged unconditionally (Charge), so `used` can
// pass the limit briefly; new requests are refused until it falls back.
//
// Small charges (up to kSmallCharge) may go a sixteenth past the limit: large requests filling
// the budget leave room for the ordinary small ones, which keep being served.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace outpost {

class MemoryBudget {
 public:
  static constexpr uint64_t kSmallCharge = 64u << 10;
  explicit MemoryBudget(uint64_t limit) : limit_(limit) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  bool TryCharge(uint64_t bytes);
  void Charge(uint64_t bytes) { used_ += bytes; }
  void Release(uint64_t bytes) { used_ -= bytes; }
  uint64_t used() const { return used_.load(); }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

// Bytes held for one request, released when it goes out of scope. Add() throws
// Error(kResourceExhausted) naming `what` when the budget is spent.
class BudgetHold {
 public:
  explicit BudgetHold(MemoryBudget* budget) : budget_(budget) {}
  ~BudgetHold();
  BudgetHold(const BudgetHold&) = delete;
  BudgetHold& operator=(const BudgetHold&) = delete;
  void Add(uint64_t bytes, const std::string& what);
  void AddDone(uint64_t bytes);  // for what is already in memory
  uint64_t bytes() const { return bytes_; }
  MemoryBudget* budget() const { return budget_; }

 private:
  MemoryBudget* budget_;
  uint64_t bytes_ = 0;
};

// Hands memory freed by a large request back to the system (glibc keeps freed heap pages in
// its arenas otherwise, so RSS stays at the peak of the largest request ever served).
void ReturnFreedMemory();

// For a long-running server: blocks of 1 MiB and more (request bodies, tensors) are mapped
// for themselves and unmapped when freed, instead of glibc's default of raising that threshold
// after each large free until whole request bodies live and stay in the heap. Fixing that
// threshold also fixes the trim threshold at 128 KiB, and then every request that frees a few
// hundred KiB hands pages back and takes them again (madvise and TLB shootdowns on each); so
// the heap keeps up to 8 MiB free at its top and ReturnFreedMemory() trims after large requests.
void UseServerAllocation();

}  // namespace outpost
