#include "core/memory_budget.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

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

namespace {

// Gives freed memory back once large requests have been quiet for kQuiet.
class Reclaimer {
 public:
  static constexpr auto kQuiet = std::chrono::seconds(1);

  static Reclaimer& Instance() {
    static Reclaimer r;
    return r;
  }
  ~Reclaimer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void Note() {
    std::lock_guard lock(mu_);
    last_ = std::chrono::steady_clock::now();
    if (pending_) return;  // the thread wakes at the deadline and looks again
    pending_ = true;
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
    cv_.notify_all();
  }
  int Add(std::function<void()> hook) {
    std::lock_guard lock(mu_);
    hooks_.emplace(++next_id_, std::move(hook));
    return next_id_;
  }
  void Remove(int id) {
    std::lock_guard running(run_mu_);  // not while it runs
    std::lock_guard lock(mu_);
    hooks_.erase(id);
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (!pending_) {
        cv_.wait(lock);
        continue;
      }
      const auto due = last_ + kQuiet;
      if (std::chrono::steady_clock::now() < due) {
        cv_.wait_until(lock, due);
        continue;
      }
      pending_ = false;
      lock.unlock();
      {
        std::lock_guard running(run_mu_);
        std::map<int, std::function<void()>> hooks;
        {
          std::lock_guard copy(mu_);
          hooks = hooks_;
        }
        for (auto& [id, hook] : hooks) hook();
        malloc_trim(0);
      }
      lock.lock();
    }
  }

  std::mutex mu_, run_mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false, pending_ = false;
  std::chrono::steady_clock::time_point last_;
  std::map<int, std::function<void()>> hooks_;
  int next_id_ = 0;
};

}  // namespace

void NoteLargeRequest() { Reclaimer::Instance().Note(); }
int AddReclaimHook(std::function<void()> hook) {
  return Reclaimer::Instance().Add(std::move(hook));
}
void RemoveReclaimHook(int id) { Reclaimer::Instance().Remove(id); }

void UseServerAllocation() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
  // glibc trims only the main arena's top: each further arena may keep up to the trim
  // threshold after a burst. Threads beyond the cores wait for a CPU anyway.
  mallopt(M_ARENA_MAX, static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
}

}  // namespace outpost
