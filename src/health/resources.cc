#include "health/resources.h"

#include <sys/statvfs.h>

#include <fstream>
#include <sstream>

namespace outpost {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> ReadText(const fs::path& p) {
  std::ifstream f(p);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::optional<double> ReadNumber(const fs::path& p) {
  auto t = ReadText(p);
  if (!t) return std::nullopt;
  try {
    return std::stod(*t);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

nlohmann::json ToJson(const ResourceSample& s) {
  nlohmann::json j = {{"cpu_busy", s.cpu_busy},
                      {"memory_total_bytes", s.memory_total},
                      {"memory_available_bytes", s.memory_available},
                      {"disk_total_bytes", s.disk_total},
                      {"disk_free_bytes", s.disk_free},
                      {"throttled", s.throttled}};
  j["temperature_c"] = s.temperature_c ? nlohmann::json(*s.temperature_c) : nlohmann::json(nullptr);
  return j;
}

ResourceReader::ResourceReader(fs::path proc_root, fs::path sys_root, fs::path disk_path)
    : proc_(std::move(proc_root)), sys_(std::move(sys_root)), disk_(std::move(disk_path)) {}

ResourceSample ResourceReader::Read() {
  ResourceSample s;
  if (auto stat = ReadText(proc_ / "stat")) {
    std::istringstream in(*stat);
    std::string cpu;
    uint64_t v, total = 0, idle = 0;
    in >> cpu;
    for (int i = 0; i < 10 && in >> v; ++i) {
      total += v;
      if (i == 3 || i == 4) idle += v;  // idle, iowait
    }
    if (last_total_ && total > last_total_)
      s.cpu_busy =
          1.0 - static_cast<double>(idle - last_idle_) / static_cast<double>(total - last_total_);
    last_total_ = total;
    last_idle_ = idle;
  }
  if (auto meminfo = ReadText(proc_ / "meminfo")) {
    std::istringstream in(*meminfo);
    std::string key;
    uint64_t kb;
    std::string unit;
    while (in >> key >> kb) {
      std::getline(in, unit);
      if (key == "MemTotal:") s.memory_total = kb * 1024;
      if (key == "MemAvailable:") s.memory_available = kb * 1024;
    }
  }
  struct statvfs vfs {};
  if (statvfs(disk_.c_str(), &vfs) == 0) {
    s.disk_total = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    s.disk_free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }
  std::error_code ec;
  for (const auto& zone : fs::directory_iterator(sys_ / "class/thermal", ec)) {
    if (zone.path().filename().string().rfind("thermal_zone", 0) != 0) continue;
    if (auto milli = ReadNumber(zone.path() / "temp")) {
      double c = *milli / 1000.0;
      if (!s.temperature_c || c > *s.temperature_c) s.temperature_c = c;
    }
  }
  // Throttling: x86 counts thermal throttle events per CPU; elsewhere, a CPU held below its
  // maximum frequency while hot is the sign.
  uint64_t events = 0;
  bool below_max = false;
  for (const auto& cpu : fs::directory_iterator(sys_ / "devices/system/cpu", ec)) {
    const std::string name = cpu.path().filename().string();
    if (name.rfind("cpu", 0) != 0 || name.size() < 4 ||
        !std::isdigit(static_cast<unsigned char>(name[3])))
      continue;
    if (auto n = ReadNumber(cpu.path() / "thermal_throttle/core_throttle_count"))
      events += static_cast<uint64_t>(*n);
    auto cur = ReadNumber(cpu.path() / "cpufreq/scaling_cur_freq");
    auto max = ReadNumber(cpu.path() / "cpufreq/cpuinfo_max_freq");
    if (cur && max && *max > 0 && *cur < 0.7 * *max) below_max = true;
  }
  s.throttled = (last_throttle_events_ && events > last_throttle_events_) ||
                (below_max && s.temperature_c && *s.temperature_c > 75);
  last_throttle_events_ = events;
  return s;
}

std::string LoadShedder::Update(const ResourceSample& s) {
  const bool shedding = !reason_.empty();
  // Entering uses the limit; leaving needs the figure back past it by the margin.
  const double relax = shedding ? limits_.margin : 0;
  if (s.memory_total > 0) {
    double avail = static_cast<double>(s.memory_available) / static_cast<double>(s.memory_total);
    if (avail < limits_.min_memory_available_fraction * (1 + relax)) {
      reason_ = "memory low (" + std::to_string(static_cast<int>(avail * 100)) + " % available)";
      return reason_;
    }
  }
  if (s.temperature_c && *s.temperature_c > limits_.max_temperature_c * (1 - relax)) {
    reason_ = "too hot (" + std::to_string(static_cast<int>(*s.temperature_c)) + " °C)";
    return reason_;
  }
  if (s.disk_total > 0 && static_cast<double>(s.disk_free) <
                              static_cast<double>(limits_.min_disk_free_bytes) * (1 + relax)) {
    reason_ = "disk almost full (" + std::to_string(s.disk_free >> 20) + " MiB free)";
    return reason_;
  }
  reason_.clear();
  return reason_;
}

}  // namespace outpost
