#include "runtime/capabilities.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "runtime/model.h"
#include "runtime/torch_backend.h"

namespace outpost {
namespace {

std::string Trim(std::string s) {
  auto b = s.find_first_not_of(" \t\n");
  auto e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string ReadSmallFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return Trim(ss.str());
}

void ReadCpuInfo(Capabilities& caps) {
  // x86 lists "flags", arm64 lists "Features"; the model name key differs too.
  static const std::set<std::string> kInteresting = {
      "sse4_1",   "sse4_2",   "avx",         "avx2",        "fma",      "f16c",     "avx512f",
      "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
      "amx_bf16", "neon",     "asimd",       "asimdhp",     "asimddp",  "fphp",     "sve",
      "sve2",     "i8mm",     "bf16",        "dotprod"};
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::set<std::string> features;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = Trim(line.substr(0, colon)), value = Trim(line.substr(colon + 1));
    if ((key == "model name" || key == "Model" || key == "Hardware") && caps.cpu_model.empty())
      caps.cpu_model = value;
    if ((key == "flags" || key == "Features") && features.empty()) {
      std::istringstream ss(value);
      std::string f;
      while (ss >> f) {
        if (kInteresting.count(f)) features.insert(f);
      }
    }
  }
  caps.cpu_features.assign(features.begin(), features.end());
  if (caps.cpu_model.empty()) caps.cpu_model = ReadSmallFile("/sys/firmware/devicetree/base/model");
}

void ReadMemInfo(Capabilities& caps) {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb;
  std::string unit;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemTotal:") caps.memory_total_bytes = kb * 1024;
    if (key == "MemAvailable:") caps.memory_available_bytes = kb * 1024;
  }
}

void FindGpus(Capabilities& caps) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
    std::ifstream in(e.path() / "information");
    std::string line, name;
    while (std::getline(in, line)) {
      if (line.rfind("Model:", 0) == 0) name = Trim(line.substr(6));
    }
    caps.gpus.push_back({"nvidia", name, e.path().string()});
  }
  if (!caps.gpus.empty()) return;
  static const std::pair<const char*, const char*> kVendors[] = {
      {"0x10de", "nvidia"}, {"0x1002", "amd"}, {"0x8086", "intel"}, {"0x13b5", "arm"}};
  for (const auto& e : fs::directory_iterator("/sys/class/drm", ec)) {
    auto name = e.path().filename().string();
    if (name.rfind("card", 0) != 0 || name.find('-') != std::string::npos) continue;
    std::string vendor_id = ReadSmallFile(e.path() / "device/vendor");
    std::string vendor = vendor_id.empty() ? "unknown" : vendor_id;
    for (auto [id, v] : kVendors) {
      if (vendor_id == id) vendor = v;
    }
    caps.gpus.push_back({vendor, ReadSmallFile(e.path() / "device/device"), e.path().string()});
  }
}

}  // namespace

Capabilities DiscoverCapabilities(bool probe_providers) {
  Capabilities caps;
  ReadCpuInfo(caps);
  ReadMemInfo(caps);
  FindGpus(caps);
  caps.logical_cores = static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN));
  struct utsname u {};
  if (uname(&u) == 0) {
    caps.architecture = u.machine;
    caps.kernel = std::string(u.sysname) + " " + u.release;
  }
  caps.onnxruntime_version = OnnxRuntimeVersion();
  caps.execution_providers = OnnxRuntimeProviders();
  caps.torch_backend = HaveTorchBackend();
  if (probe_providers) {
    caps.providers = ProbeOnnxRuntimeProviders();
    if (caps.torch_backend) caps.torch_version = TorchVersion();  // opens libtorch
  }
  return caps;
}

nlohmann::json ToJson(const Capabilities& caps) {
  nlohmann::json usable = nlohmann::json::array(), unusable = nlohmann::json::array();
  for (const auto& p : caps.providers) {
    if (p.usable)
      usable.push_back(p.name);
    else
      unusable.push_back({{"name", p.name}, {"reason", p.reason}});
  }
  nlohmann::json runtimes = {"onnx", "tflite"};
  if (caps.torch_backend) runtimes.push_back("torchscript");
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& g : caps.gpus)
    gpus.push_back({{"vendor", g.vendor}, {"name", g.name}, {"path", g.path}});
  nlohmann::json out = {
      {"cpu",
       {{"model", caps.cpu_model},
        {"architecture", caps.architecture},
        {"features", caps.cpu_features},
        {"logical_cores", caps.logical_cores}}},
      {"memory",
       {{"total_bytes", caps.memory_total_bytes},
        {"available_bytes", caps.memory_available_bytes}}},
      {"kernel", caps.kernel},
      {"onnxruntime",
       {{"version", caps.onnxruntime_version}, {"execution_providers", caps.execution_providers}}},
      {"runtimes", runtimes},
      {"gpus", gpus}};
  if (!caps.providers.empty()) {  // probed
    out["onnxruntime"]["usable_execution_providers"] = usable;
    out["onnxruntime"]["unusable_execution_providers"] = unusable;
  }
  return out;
}

}  // namespace outpost
