#include "serving/scheduler.h"

#include <atomic>
#include <future>

#include "core/error.h"
#include "core/logging.h"

namespace outpost {

struct Scheduler::Job {
  std::vector<Tensor> inputs;
  std::vector<std::string> outputs;
  Clock::time_point enqueued;
  Clock::time_point deadline;
  std::string request_id;  // the caller's, for the worker thread's log events
  int rows = 0;
  std::atomic<bool> abandoned{false};
  std::promise<std::vector<Tensor>> promise;
  InferTimings timings;
};

namespace {

// Two requests can share an execution when every input has the same name, type and
// non-batch dimensions, and they ask for the same outputs.
bool Compatible(const std::vector<Tensor>& a, const std::vector<std::string>& a_out,
                const std::vector<Tensor>& b, const std::vector<std::string>& b_out) {
  if (a.size() != b.size() || a_out != b_out) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].dtype != b[i].dtype ||
        a[i].shape.size() != b[i].shape.size())
      return false;
    if (!std::equal(a[i].shape.begin() + 1, a[i].shape.end(), b[i].shape.begin() + 1)) return false;
  }
  return true;
}

// Bytes of `rows` rows of a tensor whose data is split along dimension 0 from `offset`.
std::string SliceRows(const Tensor& t, int64_t row_begin, int64_t rows) {
  if (t.dtype == DataType::kBytes) {
    auto elements = SplitBytesElements(t.data);
    uint64_t per_row = t.shape[0] ? elements.size() / static_cast<uint64_t>(t.shape[0]) : 0;
    std::string out;
    for (uint64_t i = row_begin * per_row; i < (row_begin + rows) * per_row; ++i)
      AppendBytesElement(out, elements[i]);
    return out;
  }
  size_t row_bytes = t.shape[0] ? t.data.size() / static_cast<size_t>(t.shape[0]) : 0;
  return t.data.substr(static_cast<size_t>(row_begin) * row_bytes,
                       static_cast<size_t>(rows) * row_bytes);
}

}  // namespace

Scheduler::Scheduler(std::shared_ptr<Model> model, SchedulerOptions options,
                     ExecutionObserver observer)
    : model_(std::move(model)), options_(options), observer_(std::move(observer)) {
  for (int i = 0; i < std::max(1, options_.instance_count); ++i)
    workers_.emplace_back([this] { WorkerLoop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

size_t Scheduler::queue_depth() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

std::vector<Tensor> Scheduler::Infer(std::vector<Tensor> inputs, std::vector<std::string> outputs,
                                     Clock::time_point deadline, InferTimings* timings) {
  auto job = std::make_shared<Job>();
  job->inputs = std::move(inputs);
  job->outputs = std::move(outputs);
  job->deadline = deadline;
  job->request_id = CurrentRequestId();
  job->rows = (options_.dynamic_batching && !job->inputs.empty() && !job->inputs[0].shape.empty())
                  ? static_cast<int>(job->inputs[0].shape[0])
                  : 1;
  auto future = job->promise.get_future();
  {
    std::unique_lock lock(mu_);
    if (stopping_) Fail(ErrorCode::kUnavailable, "model is being unloaded");
    if (!options_.dynamic_batching && queue_.empty() && running_ < options_.instance_count) {
      ++running_;
      lock.unlock();
      job->enqueued = Clock::now();
      std::vector<std::shared_ptr<Job>> batch{job};
      Execute(batch);
      lock.lock();
      --running_;
      bool wake = !queue_.empty();
      lock.unlock();
      if (wake) cv_.notify_one();
      auto result = future.get();
      if (timings) *timings = job->timings;
      return result;
    }
    if (queue_.size() >= options_.max_queue_size) {
      Fail(ErrorCode::kResourceExhausted,
           "queue is full (" + std::to_string(options_.max_queue_size) + " requests waiting)");
    }
    job->enqueued = Clock::now();
    queue_.push_back(job);
    ++arrivals_;
  }
  cv_.notify_one();
  if (future.wait_until(deadline) != std::future_status::ready) {
    job->abandoned = true;
    Fail(ErrorCode::kDeadlineExceeded, "request timed out");
  }
  auto result = future.get();
  if (timings) *timings = job->timings;
  return result;
}

void Scheduler::WorkerLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] {
      return (stopping_ && queue_.empty()) ||
             (!queue_.empty() && running_ < options_.instance_count);
    });
    if (queue_.empty()) return;  // stopping, and everything queued has run
    auto batch = TakeBatch(lock);
    ++running_;
    lock.unlock();
    Execute(batch);
    lock.lock();
    --running_;
    if (!queue_.empty()) cv_.notify_one();
  }
}

std::vector<std::shared_ptr<Scheduler::Job>> Scheduler::TakeBatch(
    std::unique_lock<std::mutex>& lock) {
  std::vector<std::shared_ptr<Job>> batch{queue_.front()};
  queue_.pop_front();
  if (!options_.dynamic_batching) return batch;
  int rows = batch[0]->rows;
  const auto flush_at = batch[0]->enqueued + options_.max_queue_delay;
  uint64_t seen = 0;
  while (rows < options_.max_batch_size) {
    if (seen != arrivals_) {
      seen = arrivals_;
      for (auto it = queue_.begin(); it != queue_.end() && rows < options_.max_batch_size;) {
        const auto& j = **it;
        if (rows + j.rows <= options_.max_batch_size &&
            Compatible(batch[0]->inputs, batch[0]->outputs, j.inputs, j.outputs)) {
          rows += j.rows;
          batch.push_back(*it);
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (rows >= options_.max_batch_size || stopping_) break;
    if (!cv_.wait_until(lock, flush_at, [&] { return stopping_ || arrivals_ != seen; })) break;
  }
  return batch;
}

void Scheduler::Execute(std::vector<std::shared_ptr<Job>>& batch) {
  const auto start = Clock::now();
  // Requests whose caller gave up, or whose deadline passed in the queue, are not run.
  std::erase_if(batch, [&](const std::shared_ptr<Job>& j) {
    if (j->abandoned || start >= j->deadline) {
      j->promise.set_exception(std::make_exception_ptr(
          Error(ErrorCode::kDeadlineExceeded, "request timed out in the queue")));
      return true;
    }
    return false;
  });
  if (batch.empty()) return;
  if (batch.size() == 1) {
    auto& job = *batch[0];
    RequestIdScope scope(job.request_id);
    try {
      auto out = model_->Run(job.inputs, job.outputs);
      job.timings = {start - job.enqueued, Clock::now() - start, job.rows};
      LogExecution(batch, job.timings.compute, job.rows, nullptr);
      if (observer_) observer_(job.rows);
      job.promise.set_value(std::move(out));
    } catch (const std::exception& e) {
      LogExecution(batch, Clock::now() - start, job.rows, &e);
      job.promise.set_exception(std::current_exception());
    } catch (...) {
      job.promise.set_exception(std::current_exception());
    }
    return;
  }
  ExecuteBatched(batch);
}

// One event per execution: at debug level when it ran, at error level when the runtime
// failed; either way naming every request that was in it.
void Scheduler::LogExecution(const std::vector<std::shared_ptr<Job>>& batch, Clock::duration took,
                             int rows, const std::exception* failure) {
  const auto severity = failure ? LogSeverity::kError : LogSeverity::kDebug;
  if (!LogEnabled(severity)) return;
  nlohmann::json ids = nlohmann::json::array();
  for (const auto& j : batch) ids.push_back(j->request_id);
  nlohmann::json fields = {{"model", options_.model},
                           {"version", options_.version},
                           {"rows", rows},
                           {"requests", batch.size()},
                           {"request_ids", std::move(ids)},
                           {"compute_ms", std::chrono::duration<double, std::milli>(took).count()}};
  if (failure) fields["error"] = failure->what();
  std::string message = "model " + options_.model + " version " + options_.version +
                        (failure ? std::string(" failed to run: ") + failure->what()
                                 : " ran " + std::to_string(rows) + " rows");
  Log(severity, "runtime", failure ? "execution_failed" : "execution", std::move(message),
      std::move(fields));
}

void Scheduler::ExecuteBatched(std::vector<std::shared_ptr<Job>>& batch) {
  const auto start = Clock::now();
  int total_rows = 0;
  for (const auto& j : batch) total_rows += j->rows;
  try {
    std::vector<Tensor> merged = batch[0]->inputs;
    for (size_t i = 0; i < merged.size(); ++i) {
      merged[i].shape[0] = total_rows;
      merged[i].data.clear();
      for (const auto& j : batch) merged[i].data += j->inputs[i].data;
    }
    auto out = model_->Run(merged, batch[0]->outputs);
    const auto compute = Clock::now() - start;
    for (const auto& t : out) {
      if (t.shape.empty() || t.shape[0] != total_rows) {
        Fail(ErrorCode::kInternal, "output '" + t.name + "' has shape " + ShapeToString(t.shape) +
                                       ", whose first dimension is not the batch of " +
                                       std::to_string(total_rows));
      }
    }
    std::vector<std::vector<Tensor>> parts(batch.size());
    int64_t row = 0;
    for (size_t b = 0; b < batch.size(); ++b) {
      for (const auto& t : out) {
        Tensor part{t.name, t.dtype, t.shape, SliceRows(t, row, batch[b]->rows)};
        part.shape[0] = batch[b]->rows;
        parts[b].push_back(std::move(part));
      }
      row += batch[b]->rows;
    }
    LogExecution(batch, compute, total_rows, nullptr);
    if (observer_) observer_(total_rows);
    for (size_t b = 0; b < batch.size(); ++b) {
      batch[b]->timings = {start - batch[b]->enqueued, compute, total_rows};
      batch[b]->promise.set_value(std::move(parts[b]));
    }
    return;
  } catch (const std::exception& e) {
    LogExecution(batch, Clock::now() - start, total_rows, &e);
    for (auto& j : batch) j->promise.set_exception(std::current_exception());
  } catch (...) {
    for (auto& j : batch) j->promise.set_exception(std::current_exception());
  }
}

}  // namespace outpost
