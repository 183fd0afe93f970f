// The per-inference cost of drift monitoring: ModelMonitor::Observe on a request's input and
// output tensors (dense64: [1,64] FP32 each, both monitored, window 1000 with PSI and KS at
// each window's end), single-threaded and from 16 threads at once.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "monitoring/model_monitor.h"

using namespace outpost;
using Clock = std::chrono::steady_clock;

Tensor RandomTensor(const std::string& name, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0, 1);
  Tensor t{name, DataType::kFp32, {1, 64}, std::string(64 * sizeof(float), '\0')};
  for (int i = 0; i < 64; ++i) {
    float v = d(rng);
    std::memcpy(t.data.data() + i * sizeof(float), &v, sizeof v);
  }
  return t;
}

int main() {
  std::mt19937_64 rng(1);
  std::vector<std::vector<Tensor>> inputs, outputs;
  for (int i = 0; i < 256; ++i) {
    inputs.push_back({RandomTensor("x", rng)});
    outputs.push_back({RandomTensor("y", rng)});
  }
  auto spec =
      ParseMonitorSpec(nlohmann::json::parse(R"({"window": 1000, "tensors": {"x": {}, "y": {}}})"));
  for (int threads : {1, 16}) {
    ModelMonitor monitor("dense", "1", spec, [](const DriftEvent&) {});
    const int per_thread = 400000 / threads;
    std::atomic<int> ready{0};
    auto start = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          size_t k = static_cast<size_t>((i + t * 31) % 256);
          monitor.Observe(inputs[k]);
          monitor.Observe(outputs[k]);
        }
        ready++;
      });
    for (auto& th : pool) th.join();
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    double per = secs * 1e9 / (static_cast<double>(per_thread) * threads);
    std::printf(
        "%2d thread(s): %.0f ns of monitoring per inference (wall, all threads), %.2f M "
        "inferences/s of monitoring capacity\n",
        threads, per, 1e3 / per);
  }
  return 0;
}
