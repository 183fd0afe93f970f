// Runs inferences of one model version on at most instance_count executions at once, fed
// from one bounded queue. Without batching, a request that finds an instance free and nobody
// waiting runs on its caller's thread: the common uncontended case pays no thread hand-off. With
// dynamic batching, a worker gathers compatible queued requests (same non-batch shapes, same
// outputs) up to max_batch_size rows or until the first one has waited max_queue_delay, runs them
// as one, and splits the outputs back along dimension 0.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/model.h"

namespace outpost {

using Clock = std::chrono::steady_clock;

struct SchedulerOptions {
  int instance_count = 1;
  size_t max_queue_size = 64;
  int max_batch_size = 0;  // > 0 with dynamic_batching: batch along dimension 0
  bool dynamic_batching = false;
  std::chrono::microseconds max_queue_delay{500};
  std::string model, version;  // for the runtime's log events
};

struct InferTimings {
  Clock::duration queue{};
  Clock::duration compute{};
  int batch_rows = 0;  // rows in the execution this request was part of
};

class Scheduler {
 public:
  // Called once per model execution, from the worker, with the rows it ran.
  using ExecutionObserver = std::function<void(int batch_rows)>;

  Scheduler(std::shared_ptr<Model> model, SchedulerOptions options,
            ExecutionObserver observer = {});
  // Stops taking requests, finishes every queued one, then joins the workers.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Blocks until the request has run or `deadline` passes. Throws Error: kResourceExhausted
  // when the queue is full, kDeadlineExceeded, kUnavailable after shutdown began, or what
  // the model threw.
  std::vector<Tensor> Infer(std::vector<Tensor> inputs, std::vector<std::string> outputs,
                            Clock::time_point deadline, InferTimings* timings = nullptr);

  size_t queue_depth() const;

 private:
  struct Job;
  void WorkerLoop();
  std::vector<std::shared_ptr<Job>> TakeBatch(std::unique_lock<std::mutex>& lock);
  void Execute(std::vector<std::shared_ptr<Job>>& batch);
  void ExecuteBatched(std::vector<std::shared_ptr<Job>>& batch);
  void LogExecution(const std::vector<std::shared_ptr<Job>>& batch, Clock::duration took, int rows,
                    const std::exception* failure);

  std::shared_ptr<Model> model_;
  SchedulerOptions options_;
  ExecutionObserver observer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  uint64_t arrivals_ = 0;
  int running_ = 0;  // executions in progress, inline or on a worker; at most instance_count
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace outpost
