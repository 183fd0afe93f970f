#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model.h"

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
  std::vector<std::string> execution_providers;  // listed by this ORT build
  std::vector<ProviderStatus> providers;         // and whether each can start a session
  bool torch_backend = false;                    // lib/liboutpost_torch.so is there
  std::string torch_version;                     // libtorch's (probed)
  std::vector<GpuInfo> gpus;
};

// `probe_providers`: also start a session on every listed execution provider to tell which
// are usable. Off for the agent: a provider's runtime may write to stderr (WebGPU's Dawn
// does), which would break a JSON log; `outpost info` probes.
Capabilities DiscoverCapabilities(bool probe_providers = false);
nlohmann::json ToJson(const Capabilities& caps);

}  // namespace outpost
