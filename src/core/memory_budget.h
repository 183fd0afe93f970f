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
#include <functional>
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

// Hands memory the process has freed back to the system now (glibc keeps freed heap pages in
// its arenas otherwise).
void ReturnFreedMemory();

// Memory freed by large requests is handed back once they stop, not after each one: a stream of
// camera frames reuses its buffers (fresh pages cost a fault per 4 KiB: on a VM, taking a 1080p
// frame's buffers afresh cost more than the model's own work), and a second after the last
// one the process is back to its idle size. Cheap: a timestamp, and a wake-up of the
// reclaiming thread (started on first use).
void NoteLargeRequest();
// Runs `hook` on the reclaiming thread before each give-back (a runtime's caches, freed
// there); the id is for RemoveReclaimHook, which waits for a running hook to finish.
int AddReclaimHook(std::function<void()> hook);
void RemoveReclaimHook(int id);

// For a long-running server: blocks of 32 MiB and more (the largest request bodies) are
// mapped for themselves and unmapped when freed; smaller ones live in the heap, where the next
// request of their size finds them. Fixing the thresholds keeps glibc from raising them after
// each large free until any body lives in the heap. The heap keeps up to 8 MiB free at its top
// (a thread's arena keeps that much past the reclaimer, which glibc trims only in the main
// arena: one 1080p frame's buffer, 6 MB, stays for the next frame); the rest of what a burst of
// large requests freed is handed back by the reclaimer (NoteLargeRequest).
void UseServerAllocation();

}  // namespace outpost
