#include "runtime/ort_session.h"

#include <fmt/format.h>

#include <stdlib.h>

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <memory>
#include <unordered_map>

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

Ort::SessionOptions BaseSessionOptions(const RuntimeOptions& options) {
  OrtEnv();  // first: appending a provider needs the environment's logger
  Ort::SessionOptions so;
  so.DisablePerSessionThreads();
  so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  if (!options.memory_arena) so.DisableCpuMemArena();
  return so;
}

void AppendProvider(Ort::SessionOptions& so, const std::string& provider,
                    const std::map<std::string, std::string>& provider_options) {
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : provider_options) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  if (provider == "CUDAExecutionProvider") {
    OrtCUDAProviderOptionsV2* cuda = nullptr;
    Ort::ThrowOnError(Ort::GetApi().CreateCUDAProviderOptions(&cuda));
    std::unique_ptr<OrtCUDAProviderOptionsV2, void (*)(OrtCUDAProviderOptionsV2*)> owned(
        cuda, Ort::GetApi().ReleaseCUDAProviderOptions);
    Ort::ThrowOnError(
        Ort::GetApi().UpdateCUDAProviderOptions(cuda, keys.data(), values.data(), keys.size()));
    so.AppendExecutionProvider_CUDA_V2(*cuda);
  } else if (provider == "TensorrtExecutionProvider") {
    OrtTensorRTProviderOptionsV2* trt = nullptr;
    Ort::ThrowOnError(Ort::GetApi().CreateTensorRTProviderOptions(&trt));
    std::unique_ptr<OrtTensorRTProviderOptionsV2, void (*)(OrtTensorRTProviderOptionsV2*)> owned(
        trt, Ort::GetApi().ReleaseTensorRTProviderOptions);
    Ort::ThrowOnError(
        Ort::GetApi().UpdateTensorRTProviderOptions(trt, keys.data(), values.data(), keys.size()));
    so.AppendExecutionProvider_TensorRT_V2(*trt);
  } else {
    std::unordered_map<std::string, std::string> opts(provider_options.begin(),
                                                      provider_options.end());
    so.AppendExecutionProvider(provider, opts);
  }
}

namespace {
// ORT's messages start with its source location and status code, and can run to many lines
// (a provider's loader lists every path it tried): keep the sentence that says why.
std::string FirstLine(std::string s) {
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  constexpr std::string_view kHeader = "[ONNXRuntimeError] : ";
  if (auto at = s.find(kHeader); at != std::string::npos) {
    size_t from = at + kHeader.size();
    for (int skip = 0; skip < 2 && from != std::string::npos; ++skip) {  // code, status name
      from = s.find(" : ", from);
      if (from != std::string::npos) from += 3;
    }
    if (from != std::string::npos) s = s.substr(from);
  }
  return s;
}
}  // namespace

Ort::Session CreatePlacedSession(const RuntimeOptions& options, const std::string& origin,
                                 const std::function<Ort::Session(Ort::SessionOptions&)>& create,
                                 Placement& placement) {
  auto available = OnnxRuntimeProviders();
  for (const auto& ep : options.execution_providers) {
    if (ep == "CPUExecutionProvider") break;
    std::string reason;
    if (std::find(available.begin(), available.end(), ep) == available.end()) {
      reason = "not in this ONNX Runtime build";
    } else {
      try {
        Ort::SessionOptions so = BaseSessionOptions(options);
        auto it = options.provider_options.find(ep);
        AppendProvider(so, ep,
                       it == options.provider_options.end() ? std::map<std::string, std::string>{}
                                                            : it->second);
        Ort::Session session = create(so);
        placement.provider = ep;
        return session;
      } catch (const Ort::Exception& e) {
        reason = FirstLine(e.what());
      }
    }
    Log(LogSeverity::kWarn, "runtime", "provider_skipped",
        fmt::format("{}: {} cannot be used ({}), trying the next provider", origin, ep, reason),
        {{"model_file", origin}, {"provider", ep}, {"reason", reason}});
    placement.skipped.emplace_back(ep, reason);
  }
  Ort::SessionOptions so = BaseSessionOptions(options);
  placement.provider = "CPUExecutionProvider";
  return create(so);
}

void ConfigureOnnxRuntime(int intra_op_threads, int inter_op_threads, bool spin) {
  PendingEnvConfig() = {intra_op_threads, std::max(1, inter_op_threads), spin};
}

std::string OnnxRuntimeVersion() { return Ort::GetVersionString(); }

std::vector<std::string> OnnxRuntimeProviders() { return Ort::GetAvailableProviders(); }

namespace {
// The smallest model a provider can be asked to run: y = Identity(x), one float.
std::string ProbeModel() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  g->set_name("probe");
  auto* node = g->add_node();
  node->set_op_type("Identity");
  node->add_input("x");
  node->add_output("y");
  for (auto* v : {g->add_input(), g->add_output()}) {
    v->set_name(v == &g->input(0) ? "x" : "y");
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_value(1);
  }
  return m.SerializeAsString();
}
}  // namespace

void WarmUpOnnxRuntime() {
  static const std::string model = ProbeModel();
  Ort::Session session(OrtEnv(), model.data(), model.size(), BaseSessionOptions({}));
  float x = 0;
  const int64_t shape[] = {1};
  Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::Value input = Ort::Value::CreateTensor<float>(cpu, &x, 1, shape, 1);
  const char* in[] = {"x"};
  const char* out[] = {"y"};
  session.Run(Ort::RunOptions{nullptr}, in, &input, 1, out, 1);
}

std::vector<ProviderStatus> ProbeOnnxRuntimeProviders() {
  static const std::string model = ProbeModel();
  std::vector<ProviderStatus> out;
  for (const auto& ep : OnnxRuntimeProviders()) {
    ProviderStatus st{ep, true, ""};
    if (ep != "CPUExecutionProvider") {
      try {
        Ort::SessionOptions so = BaseSessionOptions({});
        AppendProvider(so, ep, {});
        Ort::Session session(OrtEnv(), model.data(), model.size(), so);
      } catch (const Ort::Exception& e) {
        st.usable = false;
        st.reason = FirstLine(e.what());
      }
    }
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace outpost
