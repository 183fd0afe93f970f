#include "runtime/ort_session.h"

#include <fmt/format.h>

#include <stdlib.h>

#include <algorithm>

#include "core/logging.h"

namespace outpost {
namespace {

// Nothing phones home: the official ONNX Runtime build starts a telemetry system with its
// environment (a device id and an event queue under ~/.cache/Microsoft, uploaded to its
// vendor) unless this is set first. Set while the program loads, before any thread reads the
// environment; DisableTelemetryEvents() at the environment's creation stops the rest.
const bool kTelemetryOff = setenv("ORT_DISABLE_TELEMETRY", "1", /*overwrite=*/1) == 0;

struct EnvConfig {
  int intra_op_threads = 0;
  int inter_op_threads = 1;
  bool spin = true;
};
EnvConfig& PendingEnvConfig() {
  static EnvConfig config;
  return config;
}

// One ORT environment with global thread pools: a device serving many models must not start a
// thread pool per model.
Ort::Env& OrtEnvInstance() {
  static Ort::Env env = [] {
    OrtThreadingOptions* threading = nullptr;
    Ort::ThrowOnError(Ort::GetApi().CreateThreadingOptions(&threading));
    Ort::ThrowOnError(
        Ort::GetApi().SetGlobalIntraOpNumThreads(threading, PendingEnvConfig().intra_op_threads));
    Ort::ThrowOnError(
        Ort::GetApi().SetGlobalInterOpNumThreads(threading, PendingEnvConfig().inter_op_threads));
    // Spinning briefly before sleeping costs idle CPU but saves a wake-up per parallel
    // operator: on the Silero VAD it cut the agent's added latency from ~230 to ~70 µs.
    Ort::ThrowOnError(
        Ort::GetApi().SetGlobalSpinControl(threading, PendingEnvConfig().spin ? 1 : 0));
    // ORT would print every failed run to stderr itself; the caller reports errors instead.
    Ort::Env e(threading, ORT_LOGGING_LEVEL_FATAL, "outpost");
    e.DisableTelemetryEvents();
    (void)kTelemetryOff;
    Ort::GetApi().ReleaseThreadingOptions(threading);
    return e;
  }();
  return env;
}

}  // namespace

Ort::Env& OrtEnv() { return OrtEnvInstance(); }

Ort::SessionOptions MakeSessionOptions(const std::filesystem::path& path,
                                       const RuntimeOptions& options) {
  OrtEnv();  // first: appending a provider needs the environment's logger
  Ort::SessionOptions so;
  so.DisablePerSessionThreads();
  so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  if (!options.memory_arena) so.DisableCpuMemArena();
  auto available = OnnxRuntimeProviders();
  for (const auto& ep : options.execution_providers) {
    if (ep == "CPUExecutionProvider") continue;
    if (std::find(available.begin(), available.end(), ep) == available.end()) {
      Log(LogSeverity::kWarn, "runtime", "provider_missing",
          fmt::format("{}: {} is not in this ONNX Runtime build, running on CPU", path.string(),
                      ep),
          {{"model_file", path.string()}, {"provider", ep}});
      continue;
    }
    // A provider compiled into ORT may still lack its library or device here: fall back to CPU.
    try {
      if (ep == "CUDAExecutionProvider") {
        OrtCUDAProviderOptions cuda{};
        so.AppendExecutionProvider_CUDA(cuda);
      } else {
        so.AppendExecutionProvider(ep.substr(0, ep.find("ExecutionProvider")), {});
      }
    } catch (const Ort::Exception& e) {
      Log(LogSeverity::kWarn, "runtime", "provider_failed",
          fmt::format("{}: {} cannot be used, running on CPU: {}", path.string(), ep, e.what()),
          {{"model_file", path.string()}, {"provider", ep}});
    }
  }
  return so;
}

void ConfigureOnnxRuntime(int intra_op_threads, int inter_op_threads, bool spin) {
  PendingEnvConfig() = {intra_op_threads, std::max(1, inter_op_threads), spin};
}

std::string OnnxRuntimeVersion() { return Ort::GetVersionString(); }

std::vector<std::string> OnnxRuntimeProviders() { return Ort::GetAvailableProviders(); }

}  // namespace outpost
