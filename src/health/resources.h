// The device's own figures, read from /proc and /sys: CPU use, memory, disk space, the hottest
// thermal zone and whether the CPU is being throttled. The roots are settable so that tests
// can stand in for the kernel.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace outpost {

struct ResourceSample {
  double cpu_busy = 0;  // 0..1 since the previous sample
  uint64_t memory_total = 0, memory_available = 0;
  uint64_t disk_total = 0, disk_free = 0;  // of the watched path's file system
  std::optional<double> temperature_c;     // hottest thermal zone
  bool throttled = false;                  // a CPU runs below its maximum for heat
};

nlohmann::json ToJson(const ResourceSample& s);

class ResourceReader {
 public:
  ResourceReader(std::filesystem::path proc_root = "/proc", std::filesystem::path sys_root = "/sys",
                 std::filesystem::path disk_path = "/");
  ResourceSample Read();

 private:
  std::filesystem::path proc_, sys_, disk_;
  uint64_t last_total_ = 0, last_idle_ = 0;
  uint64_t last_throttle_events_ = 0;
};

// When to refuse new work so that the device does not fall over, with hysteresis: shedding
// starts past a limit and stops only once the figure is back by `margin`.
struct SheddingLimits {
  double min_memory_available_fraction = 0.03;
  double max_temperature_c = 90;
  uint64_t min_disk_free_bytes = 64u << 20;
  double margin = 0.1;  // relative
};

class LoadShedder {
 public:
  explicit LoadShedder(SheddingLimits limits) : limits_(limits) {}
  // Updates the state from a sample; returns the reason shedding is on ("" when off).
  std::string Update(const ResourceSample& s);
  const std::string& reason() const { return reason_; }

 private:
  SheddingLimits limits_;
  std::string reason_;
};

}  // namespace outpost
