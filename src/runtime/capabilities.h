#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace outpost {

struct GpuInfo {
  std::string vendor;  // "nvidia", "amd", "intel", ...
  std::string name;
  std::string path;  // where it was found
};

// What this device offers to models: read from /proc, /sys and ONNX Runtime.
struct Capabilities {
  std::string cpu_model;
  std::string architecture;
  std::vector<std::string> cpu_features;  // the ones that matter to inference kernels
  unsigned logical_cores = 0;
  uint64_t memory_total_bytes = 0;
  uint64_t memory_available_bytes = 0;
  std::string kernel;
  std::string onnxruntime_version;
  std::vector<std::string> execution_providers;
  std::vector<GpuInfo> gpus;
};

Capabilities DiscoverCapabilities();
nlohmann::json ToJson(const Capabilities& caps);

}  // namespace outpost
