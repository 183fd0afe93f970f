#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace outpost {

// What both front ends say about the server in metadata responses.
struct ServerInfo {
  std::string name = "outpost";
  std::string version = OUTPOST_VERSION;
  std::vector<std::string> extensions = {"binary_tensor_data", "model_repository",
                                         "statistics_prometheus", "system_shared_memory"};
  nlohmann::json capabilities;  // the device, from DiscoverCapabilities()
  bool unsigned_models_allowed = false;
};

}  // namespace outpost
