#include "bench_command.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/process_memory.h"
#include "package/package.h"
#include "runtime/model.h"
#include "serving/model_config.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::vector<std::string> models;
  std::vector<std::string> shapes;  // name=1x3x224x224 for dimensions the model leaves free
  int iterations = 200;
  double seconds = 2;
  int threads = 0;
  bool as_json = false;
};
BenchOptions& Opts() {
  static BenchOptions o;
  return o;
}

// A model given as a file (.onnx, .tflite, .pt, .ptl) or as a package source directory (its
// manifest.json says the runtime and, for TorchScript, the tensors).
struct Source {
  std::string label;
  std::string runtime;
  fs::path file;
  Manifest manifest;
};

Source ReadSource(const std::string& arg) {
  Source s;
  s.label = fs::path(arg).filename().string();
  if (fs::is_directory(arg)) {
    // A package's source (name, version, provenance...) or a repository version's manifest.
    std::string text = ReadFile(fs::path(arg) / "manifest.json");
    json j = json::parse(text, nullptr, false);
    if (j.is_object() && j.contains("version"))
      text = RepositoryManifest(ManifestForDirectory(j, arg)).dump();
    s.manifest = ParseManifest(text);
    s.runtime = s.manifest.runtime;
    s.file = fs::path(arg) / s.manifest.model_file;
    return s;
  }
  std::string ext = fs::path(arg).extension().string();
  s.runtime = ext == ".tflite"                  ? "tflite"
              : (ext == ".pt" || ext == ".ptl") ? "torchscript"
                                                : "onnx";
  s.manifest.runtime = s.runtime;
  s.file = arg;
  if (s.runtime == "torchscript")
    Fail(ErrorCode::kInvalidArgument,
         arg +
             ": a TorchScript model needs its tensors declared: give its package directory "
             "(with manifest.json) instead of the file");
  return s;
}

// --shape values, and which of them some model's input has taken (the rest are typos).
struct GivenShapes {
  std::map<std::string, Shape> dims;
  std::set<std::string> used;
};

GivenShapes ParseShapes(const std::vector<std::string>& args) {
  GivenShapes given;
  for (const auto& s : args) {
    auto eq = s.find('=');
    Shape dims;
    bool ok = eq != std::string::npos && eq > 0;
    const char* end = s.data() + s.size();
    for (const char* at = ok ? s.data() + eq + 1 : end; ok;) {
      int64_t d = 0;
      auto [stop, ec] = std::from_chars(at, end, d);
      ok = ec == std::errc() && d > 0 && (stop == end || *stop == 'x');
      if (!ok) break;
      dims.push_back(d);
      if (stop == end) break;
      at = stop + 1;
    }
    if (!ok)
      Fail(ErrorCode::kInvalidArgument, "--shape " + s + ": wants NAME=AxBxC with positive sizes");
    given.dims[s.substr(0, eq)] = dims;
  }
  return given;
}

// Deterministic inputs in [-1, 1] (integers: small non-negative values), with free dimensions
// from --shape or 1.
std::vector<Tensor> MakeInputs(const Model& model, GivenShapes& given) {
  std::vector<Tensor> out;
  for (const auto& spec : model.inputs()) {
    Tensor t{spec.name, spec.dtype, spec.shape, {}};
    if (auto it = given.dims.find(spec.name); it != given.dims.end()) {
      t.shape = it->second;
      given.used.insert(spec.name);
    }
    for (auto& d : t.shape) d = d < 0 ? 1 : d;
    uint64_t n = ElementCount(t.shape);
    t.data.resize(n * ElementSize(spec.dtype));
    for (uint64_t i = 0; i < n; ++i) {
      double v = std::sin(static_cast<double>(i) * 0.37);
      switch (spec.dtype) {
        case DataType::kFp32: {
          float f = static_cast<float>(v);
          std::memcpy(t.data.data() + 4 * i, &f, 4);
          break;
        }
        case DataType::kInt64: {
          int64_t k = static_cast<int64_t>(i % 7);
          std::memcpy(t.data.data() + 8 * i, &k, 8);
          break;
        }
        case DataType::kInt32: {
          int32_t k = static_cast<int32_t>(i % 7);
          std::memcpy(t.data.data() + 4 * i, &k, 4);
          break;
        }
        default:
          t.data[i * ElementSize(spec.dtype)] = static_cast<char>(i % 7);
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Result {
  std::string model, runtime, provider;
  double load_ms = 0, p50_ms = 0, p99_ms = 0, rps_1 = 0, rps_n = 0;
  uint64_t rss_bytes = 0;
  std::vector<Tensor> outputs;
  std::string error;
};

double Throughput(Model& model, const std::vector<Tensor>& inputs, int threads, double seconds) {
  std::atomic<uint64_t> done{0};
  auto until = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> pool;
  auto start = Clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      while (Clock::now() < until) {
        model.Run(inputs, {});
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto& t : pool) t.join();
  return static_cast<double>(done) / std::chrono::duration<double>(Clock::now() - start).count();
}

std::unique_ptr<Model> Load(const Source& src, const std::string& provider) {
  RuntimeOptions options;
  ApplyDeclaredTensors(src.manifest, options);
  if (src.runtime != "torchscript") options.execution_providers = {provider};
  std::unique_ptr<Model> model = LoadModel(src.runtime, src.file, options);
  if (src.runtime != "torchscript" && model->placement().provider != provider)
    Fail(ErrorCode::kInvalidArgument,
         provider + " cannot run it: " +
             (model->placement().skipped.empty() ? std::string("?")
                                                 : model->placement().skipped[0].second));
  return model;
}

Result Measure(const Source& src, const std::string& provider, int threads, GivenShapes& shapes) {
  Result r{src.label, src.runtime, provider};
  uint64_t before = ResidentBytes();
  auto t0 = Clock::now();
  std::unique_ptr<Model> model = Load(src, provider);
  r.load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  r.provider = model->placement().provider;
  auto inputs = MakeInputs(*model, shapes);
  for (int i = 0; i < 3; ++i) r.outputs = model->Run(inputs, {});  // warm-up
  r.rss_bytes = ResidentBytes() > before ? ResidentBytes() - before : 0;
  std::vector<double> ms;
  for (int i = 0; i < Opts().iterations; ++i) {
    auto s = Clock::now();
    model->Run(inputs, {});
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
  }
  r.p50_ms = Percentile(ms, 0.5);
  r.p99_ms = Percentile(ms, 0.99);
  r.rps_1 = Throughput(*model, inputs, 1, Opts().seconds);
  r.rps_n = Throughput(*model, inputs, threads, Opts().seconds);
  return r;
}

// Largest absolute difference between two runs' outputs, matched by position (an imported
// model and its twin name their tensors differently); NaN when they cannot be compared.
double MaxAbsDifference(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return NAN;
  double worst = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    if (a[k].dtype != DataType::kFp32 || b[k].dtype != DataType::kFp32 ||
        a[k].data.size() != b[k].data.size())
      return NAN;
    size_t n = a[k].data.size() / 4;
    for (size_t i = 0; i < n; ++i) {
      float x, y;
      std::memcpy(&x, a[k].data.data() + 4 * i, 4);
      std::memcpy(&y, b[k].data.data() + 4 * i, 4);
      worst = std::max(worst, static_cast<double>(std::fabs(x - y)));
    }
  }
  return worst;
}

int Bench() {
  auto& o = Opts();
  int threads = o.threads > 0 ? o.threads
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  GivenShapes shapes = ParseShapes(o.shapes);
  std::set<std::string> warmed;
  std::vector<std::string> usable;
  for (const auto& p : ProbeOnnxRuntimeProviders())
    if (p.usable) usable.push_back(p.name);
  std::vector<Result> results;
  for (const auto& arg : o.models) {
    Source src = ReadSource(arg);
    std::vector<std::string> providers =
        src.runtime == "torchscript" ? std::vector<std::string>{"libtorch CPU"} : usable;
    for (const auto& p : providers) {
      try {
        // A runtime's first model also pays for its one-time setup (thread pools, allocators,
        // libtorch opened): paid here, so that no row's load time or RSS depends on its place.
        if (warmed.insert(src.runtime + "/" + p).second) {
          auto first = Load(src, p);
          first->Run(MakeInputs(*first, shapes), {});
        }
        results.push_back(Measure(src, p, threads, shapes));
      } catch (const Error& e) {
        Result r{src.label, src.runtime, p};
        r.error = e.what();
        results.push_back(std::move(r));
      }
    }
  }
  for (const auto& [name, dims] : shapes.dims)
    if (!shapes.used.contains(name))
      Fail(ErrorCode::kInvalidArgument, "--shape " + name + ": no model has an input of that name");
  const Result* reference = nullptr;
  for (const auto& r : results)
    if (r.error.empty()) {
      reference = &r;
      break;
    }
  json out = json::array();
  for (const auto& r : results) {
    json j = {{"model", r.model}, {"runtime", r.runtime}, {"provider", r.provider}};
    if (!r.error.empty()) {
      j["error"] = r.error;
    } else {
      double diff = MaxAbsDifference(reference->outputs, r.outputs);
      j.update({{"load_ms", r.load_ms},
                {"p50_ms", r.p50_ms},
                {"p99_ms", r.p99_ms},
                {"throughput_1", r.rps_1},
                {"throughput_n", r.rps_n},
                {"threads_n", threads},
                {"rss_bytes", r.rss_bytes},
                {"max_abs_diff_vs_first", std::isnan(diff) ? json(nullptr) : json(diff)}});
    }
    out.push_back(j);
  }
  if (o.as_json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<28} {:<12} {:<22} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>11}\n",
                           "model", "runtime", "provider", "load ms", "p50 ms", "p99 ms",
                           "inf/s x1", fmt::format("inf/s x{}", threads), "RSS MiB", "max|diff|");
  for (const auto& j : out) {
    if (j.contains("error")) {
      std::cout << fmt::format("{:<28} {:<12} {:<22} {}\n", j["model"].get<std::string>(),
                               j["runtime"].get<std::string>(), j["provider"].get<std::string>(),
                               j["error"].get<std::string>());
      continue;
    }
    std::string diff = j["max_abs_diff_vs_first"].is_null()
                           ? "-"
                           : fmt::format("{:.3g}", j["max_abs_diff_vs_first"].get<double>());
    std::cout << fmt::format(
        "{:<28} {:<12} {:<22} {:>9.1f} {:>9.3f} {:>9.3f} {:>10.0f} {:>10.0f} {:>9.1f} {:>11}\n",
        j["model"].get<std::string>(), j["runtime"].get<std::string>(),
        j["provider"].get<std::string>(), j["load_ms"].get<double>(), j["p50_ms"].get<double>(),
        j["p99_ms"].get<double>(), j["throughput_1"].get<double>(), j["throughput_n"].get<double>(),
        j["rss_bytes"].get<double>() / (1 << 20), diff);
  }
  return 0;
}

}  // namespace

void AddBenchCommand(CLI::App& app) {
  auto& o = Opts();
  auto* cmd = app.add_subcommand(
      "bench",
      "Run models on every backend and execution provider this device has: latency, "
      "throughput, memory, load time, and how far outputs differ from the first model's");
  cmd->add_option("models", o.models,
                  "model files (.onnx, .tflite) or package directories (manifest.json; needed "
                  "for TorchScript); the first is the reference for agreement")
      ->required();
  cmd->add_option("--shape", o.shapes, "name=AxBxC for an input's free dimensions (else 1)");
  cmd->add_option("--iterations", o.iterations, "timed runs for p50/p99")
      ->check(CLI::Range(10, 1000000));
  cmd->add_option("--seconds", o.seconds, "seconds per throughput measurement")
      ->check(CLI::Range(0.1, 600.0));
  cmd->add_option("--threads", o.threads, "callers for the N-thread throughput (0: one per core)");
  cmd->add_flag("--json", o.as_json, "print JSON");
}

int RunBenchCommand(CLI::App& app) { return app.got_subcommand("bench") ? Bench() : -1; }

}  // namespace outpost
