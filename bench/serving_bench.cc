// Latency and throughput of one model served four ways, side by side in one run:
//   direct  ONNX Runtime called in this process (the baseline),
//   json    outpostd over HTTP with JSON tensors,
//   binary  outpostd over HTTP with the binary tensor extension,
//   grpc    outpostd over gRPC with raw tensor contents,
// at concurrency 1, 4 and 16, plus dynamic batching on against off, a camera frame passed in
// system shared memory against in the body, and the idle agent's RSS.
// outpostd runs as its own process, as deployed; clients run here.
#include <fcntl.h>
#include <httplib.h>
#include <onnxruntime_cxx_api.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <thread>

#include "core/atomic_file.h"
#include "grpc_service.grpc.pb.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Input {
  std::string name;
  std::string datatype;  // FP32 or INT64
  std::vector<int64_t> shape;
  std::string raw;
};

struct Workload {
  std::string label;
  std::string model;
  std::vector<Input> inputs;
};

std::string RandomFloats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  std::string raw(n * 4, '\0');
  auto* f = reinterpret_cast<float*>(raw.data());
  for (size_t i = 0; i < n; ++i) f[i] = d(rng);
  return raw;
}

std::string Int64(int64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }

struct Result {
  double p50_us = 0, p99_us = 0, rps = 0;
  size_t errors = 0;
};

// Runs `call` from `concurrency` threads for `seconds` after a short warm-up.
Result Measure(int concurrency, double seconds,
               const std::function<std::function<bool()>()>& make_caller) {
  std::vector<std::vector<double>> lat(concurrency);
  std::atomic<size_t> errors{0};
  std::atomic<bool> stop{false}, measuring{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      auto call = make_caller();
      while (!stop) {
        auto start = Clock::now();
        bool ok = call();
        double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
        if (measuring) {
          if (!ok) ++errors;
          lat[t].push_back(us);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  measuring = true;
  auto begin = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  stop = true;
  for (auto& th : threads) th.join();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  Result r;
  if (all.empty()) return r;
  r.p50_us = all[all.size() / 2];
  r.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  r.rps = all.size() / elapsed;
  r.errors = errors;
  return r;
}

// --- the four callers ------------------------------------------------------------------
ONNXTensorElementDataType OnnxType(const std::string& dt) {
  if (dt == "UINT8") return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  return dt == "INT64" ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

std::function<bool()> DirectCaller(Ort::Session& session, const Workload& w) {
  return [&session, &w] {
    static const Ort::MemoryInfo cpu =
        Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    std::vector<const char*> names;
    std::vector<Ort::Value> values;
    for (const auto& in : w.inputs) {
      names.push_back(in.name.c_str());
      values.push_back(Ort::Value::CreateTensor(cpu, const_cast<char*>(in.raw.data()),
                                                in.raw.size(), in.shape.data(), in.shape.size(),
                                                OnnxType(in.datatype)));
    }
    Ort::AllocatorWithDefaultOptions alloc;
    std::vector<Ort::AllocatedStringPtr> out_ptrs;
    std::vector<const char*> out_names;
    for (size_t i = 0; i < session.GetOutputCount(); ++i) {
      out_ptrs.push_back(session.GetOutputNameAllocated(i, alloc));
      out_names.push_back(out_ptrs.back().get());
    }
    auto out = session.Run(Ort::RunOptions{nullptr}, names.data(), values.data(), values.size(),
                           out_names.data(), out_names.size());
    // Copy the outputs out, as a server must.
    std::string sink;
    for (auto& v : out) {
      auto info = v.GetTensorTypeAndShapeInfo();
      sink.append(static_cast<const char*>(v.GetTensorRawData()), info.GetElementCount() * 4);
    }
    return !sink.empty();
  };
}

std::string JsonBody(const Workload& w) {
  json req;
  req["inputs"] = json::array();
  for (const auto& in : w.inputs) {
    json data = json::array();
    if (in.datatype == "INT64") {
      for (size_t i = 0; i < in.raw.size() / 8; ++i)
        data.push_back(reinterpret_cast<const int64_t*>(in.raw.data())[i]);
    } else {
      for (size_t i = 0; i < in.raw.size() / 4; ++i)
        data.push_back(reinterpret_cast<const float*>(in.raw.data())[i]);
    }
    req["inputs"].push_back(
        {{"name", in.name}, {"datatype", in.datatype}, {"shape", in.shape}, {"data", data}});
  }
  return req.dump();
}

std::function<bool()> HttpCaller(int port, const Workload& w, bool binary) {
  auto client = std::make_shared<httplib::Client>("127.0.0.1", port);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(true);
  std::string body;
  httplib::Headers headers;
  if (binary) {
    json req;
    req["inputs"] = json::array();
    std::string blobs;
    for (const auto& in : w.inputs) {
      req["inputs"].push_back({{"name", in.name},
                               {"datatype", in.datatype},
                               {"shape", in.shape},
                               {"parameters", {{"binary_data_size", in.raw.size()}}}});
      blobs += in.raw;
    }
    req["parameters"] = {{"binary_data_output", true}};
    std::string header = req.dump();
    headers.emplace("Inference-Header-Content-Length", std::to_string(header.size()));
    body = header + blobs;
  } else {
    body = JsonBody(w);
  }
  std::string path = "/v2/models/" + w.model + "/infer";
  std::string type = binary ? "application/octet-stream" : "application/json";
  return [client, body, headers, path, type] {
    auto res = client->Post(path, headers, body, type);
    if (res && res->status == 200) return true;
    static std::atomic<int> reported{0};
    if (reported++ < 5) {
      fprintf(stderr, "http error: %s\n",
              res ? (std::to_string(res->status) + " " + res->body).c_str()
                  : httplib::to_string(res.error()).c_str());
    }
    return false;
  };
}

std::function<bool()> GrpcCaller(int port, const Workload& w) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per client thread
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                           grpc::InsecureChannelCredentials(), args);
  std::shared_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  auto req = std::make_shared<inference::ModelInferRequest>();
  req->set_model_name(w.model);
  for (const auto& in : w.inputs) {
    auto* t = req->add_inputs();
    t->set_name(in.name);
    t->set_datatype(in.datatype);
    for (auto d : in.shape) t->add_shape(d);
    req->add_raw_input_contents(in.raw);
  }
  return [stub, req, channel] {
    grpc::ClientContext ctx;
    inference::ModelInferResponse res;
    auto status = stub->ModelInfer(&ctx, *req, &res);
    if (!status.ok()) {
      static std::atomic<int> reported{0};
      if (reported++ < 5)
        fprintf(stderr, "grpc error: %d %s\n", status.error_code(), status.error_message().c_str());
    }
    return status.ok();
  };
}

// The system shared-memory extension as a camera client uses it: one region per client
// thread, registered once; each call copies the frame into the region (as a producer writing
// its frame there would) and sends a JSON request naming it.
std::function<bool()> ShmHttpCaller(int port, const Workload& w) {
  static std::atomic<int> next{0};
  struct Region {
    std::string key, name;
    int fd = -1;
    char* map = nullptr;
    size_t size = 0;
    std::shared_ptr<httplib::Client> client;
    ~Region() {
      if (client) client->Post("/v2/systemsharedmemory/region/" + name + "/unregister");
      if (map) munmap(map, size);
      if (fd >= 0) close(fd);
      shm_unlink(key.c_str());
    }
  };
  auto r = std::make_shared<Region>();
  const int id = next++;
  r->name = "bench" + std::to_string(id);
  r->key = "/outpost-bench-" + std::to_string(getpid()) + "-" + std::to_string(id);
  for (const auto& in : w.inputs) r->size += in.raw.size();
  r->fd = shm_open(r->key.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (r->fd < 0 || ftruncate(r->fd, static_cast<off_t>(r->size)) != 0)
    throw std::runtime_error("shm_open " + r->key);
  r->map = static_cast<char*>(mmap(nullptr, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0));
  if (r->map == MAP_FAILED) throw std::runtime_error("mmap " + r->key);
  r->client = std::make_shared<httplib::Client>("127.0.0.1", port);
  r->client->set_keep_alive(true);
  r->client->set_tcp_nodelay(true);
  auto reg =
      r->client->Post("/v2/systemsharedmemory/region/" + r->name + "/register",
                      json{{"key", r->key}, {"byte_size", r->size}}.dump(), "application/json");
  if (!reg || reg->status != 200)
    throw std::runtime_error("register: " + (reg ? reg->body : httplib::to_string(reg.error())));
  json req;
  req["inputs"] = json::array();
  uint64_t offset = 0;
  for (const auto& in : w.inputs) {
    req["inputs"].push_back({{"name", in.name},
                             {"datatype", in.datatype},
                             {"shape", in.shape},
                             {"parameters",
                              {{"shared_memory_region", r->name},
                               {"shared_memory_byte_size", in.raw.size()},
                               {"shared_memory_offset", offset}}}});
    offset += in.raw.size();
  }
  req["parameters"] = {{"binary_data_output", true}};
  std::string body = req.dump(), path = "/v2/models/" + w.model + "/infer";
  return [r, &w, body, path] {
    size_t at = 0;
    for (const auto& in : w.inputs) {
      std::memcpy(r->map + at, in.raw.data(), in.raw.size());
      at += in.raw.size();
    }
    auto res = r->client->Post(path, body, "application/json");
    if (res && res->status == 200) return true;
    static std::atomic<int> reported{0};
    if (reported++ < 5)
      fprintf(stderr, "shm error: %s\n",
              res ? (std::to_string(res->status) + " " + res->body).c_str()
                  : httplib::to_string(res.error()).c_str());
    return false;
  };
}

// The model files' bytes in a repository (<model>/<version>/model.onnx).
uint64_t ModelFileBytes(const std::string& repo) {
  uint64_t total = 0;
  for (const auto& m : std::filesystem::directory_iterator(repo)) {
    if (!m.is_directory()) continue;
    for (const auto& v : std::filesystem::directory_iterator(m.path()))
      if (v.is_directory() && std::filesystem::exists(v.path() / "model.onnx"))
        total += std::filesystem::file_size(v.path() / "model.onnx");
  }
  return total;
}

// --- the agent process -----------------------------------------------------------------
struct AgentProcess {
  pid_t pid = -1;
  int http = 0, grpc = 0;
  double ready_ms = 0;  // exec to /v2/health/ready
  AgentProcess(const std::string& bin, const std::string& repo, int http_port, int grpc_port,
               const std::vector<std::string>& extra = {})
      : http(http_port), grpc(grpc_port) {
    std::vector<std::string> args = {
        bin, "--model-repository", repo, "--http-port", std::to_string(http_port), "--grpc-port",
        std::to_string(grpc_port), "--log-level", "warn", "--repository-poll-secs", "0",
        // keys of its own, not the machine's /var/lib/outpost/auth
        "--auth-dir", "/tmp/outpost-bench-auth-" + std::to_string(getpid()),
        // the fixtures are plain directories, not signed packages
        "--allow-unsigned-models"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const auto start = Clock::now();
    if (posix_spawn(&pid, bin.c_str(), nullptr, nullptr, argv.data(), environ) != 0)
      throw std::runtime_error("spawn " + bin);
    httplib::Client c("127.0.0.1", http_port);
    for (int i = 0; i < 6000; ++i) {
      auto r = c.Get("/v2/health/ready");
      if (r && r->status == 200) {
        ready_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    throw std::runtime_error("outpostd did not become ready");
  }
  struct MemoryKiB {
    long rss_kib = -1, anon_kib = -1, file_kib = -1;
  };
  MemoryKiB Memory() const {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    MemoryKiB m;
    while (std::getline(in, line)) {
      if (line.rfind("VmRSS:", 0) == 0) m.rss_kib = std::stol(line.substr(6));
      if (line.rfind("RssAnon:", 0) == 0) m.anon_kib = std::stol(line.substr(8));
      if (line.rfind("RssFile:", 0) == 0) m.file_kib = std::stol(line.substr(8));
    }
    return m;
  }
  ~AgentProcess() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

// The Node.js baseline: bench/node_ort_server.js on one model, as its own process.
struct NodeServer {
  pid_t pid = -1;
  int port;
  NodeServer(const std::string& script, const std::string& modules, const std::string& model,
             const std::string& name, int port_)
      : port(port_) {
    std::vector<std::string> args = {"node", script, model, name, std::to_string(port)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = {"NODE_PATH=" + modules, "PATH=/usr/bin:/bin"};
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawnp(&pid, "node", nullptr, nullptr, argv.data(), envp.data()) != 0)
      throw std::runtime_error("spawn node");
    httplib::Client c("127.0.0.1", port);
    for (int i = 0; i < 600; ++i) {
      if (auto r = c.Get("/")) return;  // 404: listening
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("the Node.js server did not start");
  }
  ~NodeServer() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

void PrintRow(const std::string& label, const std::string& mode, int c, const Result& r,
              const Result& base) {
  printf("%-22s %-7s %3d %10.1f %10.1f %10.0f %+10.1f %8.2f %6zu\n", label.c_str(), mode.c_str(), c,
         r.p50_us, r.p99_us, r.rps, r.p50_us - base.p50_us, base.rps > 0 ? r.rps / base.rps : 0.0,
         r.errors);
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"serving_bench: outpostd against ONNX Runtime called directly"};
  std::string fixtures, samples, bin;
  double seconds = 1.5;
  std::vector<int> concurrencies = {1, 4, 16};
  std::vector<std::string> modes = {"json", "binary", "grpc"};
  bool batching = true, monitoring = true, frame = true;
  std::string only, node_modules, node_server;
  std::vector<std::string> agent_args;
  app.add_option("--fixtures", fixtures, "Test model repository (tests/fixtures/make_models.py)")
      ->required();
  app.add_option("--samples", samples, "Sample model repository (build/models)")->required();
  app.add_option("--outpostd", bin, "outpostd binary")->required();
  app.add_option("--seconds", seconds, "Measured seconds per cell");
  app.add_option("--concurrency", concurrencies, "Client concurrencies");
  app.add_option("--modes", modes, "Agent modes to measure besides direct: json binary grpc");
  app.add_option("--batching", batching, "Measure dynamic batching (true/false)");
  app.add_option("--monitoring", monitoring, "Measure drift monitoring's overhead (true/false)");
  app.add_option("--frame", frame,
                 "Measure a 1080p camera frame in shared memory against in the body (true/false)");
  app.add_option("--node-modules", node_modules,
                 "node_modules holding onnxruntime-node: also measure a Node.js server on the same "
                 "model (bench/node_ort_server.js, given by --node-server)");
  app.add_option("--node-server", node_server, "Path of bench/node_ort_server.js");
  app.add_option("--only", only, "Measure only the workloads whose label contains this");
  app.add_option("--agent-arg", agent_args,
                 "Extra outpostd flag (repeatable), e.g. --agent-arg=--intra-op-threads=1");
  CLI11_PARSE(app, argc, argv);

  std::vector<Workload> workloads = {
      {"dense64 [64,64] 16KiB", "dense", {{"x", "FP32", {64, 64}, RandomFloats(64 * 64, 2)}}},
      {"dense64 [1,64] 256B", "dense", {{"x", "FP32", {1, 64}, RandomFloats(64, 1)}}},
      {"silero_vad [1,512]",
       "silero_vad",
       {{"input", "FP32", {1, 512}, RandomFloats(512, 3)},
        {"state", "FP32", {2, 1, 128}, std::string(256 * 4, '\0')},
        {"sr", "INT64", {}, Int64(16000)}}},
      {"silero_vad instances=1",
       "silero_vad_single",
       {{"input", "FP32", {1, 512}, RandomFloats(512, 3)},
        {"state", "FP32", {2, 1, 128}, std::string(256 * 4, '\0')},
        {"sr", "INT64", {}, Int64(16000)}}},
  };
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "bench");
  // One repository holding copies of the fixtures and the samples (the agent refuses model
  // directories that are symlinks out of its repository).
  std::string repo = "/tmp/outpost-bench-repo-" + std::to_string(getpid());
  std::filesystem::create_directories(repo);
  for (const auto* dir : {&fixtures, &samples}) {
    for (const auto& e : std::filesystem::directory_iterator(*dir)) {
      std::filesystem::copy(e.path(), repo + "/" + e.path().filename().string(),
                            std::filesystem::copy_options::recursive);
    }
  }

  // The same dense model once more, with drift monitors on its input and output.
  std::filesystem::copy(repo + "/dense", repo + "/dense_monitored",
                        std::filesystem::copy_options::recursive);
  for (const auto& v : std::filesystem::directory_iterator(repo + "/dense_monitored"))
    if (v.is_directory())
      outpost::WriteFileAtomically(
          v.path() / "manifest.json",
          R"({"monitoring": {"window": 1000, "tensors": {"x": {}, "y": {}}}})");
  // Silero VAD once more as it was served before instance_count followed the cores: one
  // execution at a time (an unsigned copy whose manifest says so).
  std::filesystem::copy(repo + "/silero_vad", repo + "/silero_vad_single",
                        std::filesystem::copy_options::recursive);
  for (const auto& v : std::filesystem::directory_iterator(repo + "/silero_vad_single")) {
    if (!v.is_directory()) continue;
    std::filesystem::remove_all(v.path() / ".package");
    std::ifstream in(v.path() / "manifest.json");
    json manifest = json::parse(in);
    manifest["name"] = "silero_vad_single";
    manifest["instance_count"] = 1;
    outpost::WriteFileAtomically(v.path() / "manifest.json", manifest.dump());
  }
  printf("serving_bench: %d cores, ORT %s, %.1f s per cell\n\n", hw,
         Ort::GetVersionString().c_str(), seconds);
  printf("%-22s %-7s %3s %10s %10s %10s %10s %8s %6s\n", "workload", "mode", "c", "p50_us",
         "p99_us", "req/s", "+p50_us", "x_rps", "errors");
  {
    AgentProcess agent(bin, repo, 18900 + getpid() % 500, 19500 + getpid() % 500, agent_args);
    for (const auto& w : workloads) {
      if (w.label.find(only) == std::string::npos) continue;
      Ort::SessionOptions so;
      so.SetIntraOpNumThreads(hw);
      so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
      std::string model_path;
      for (const auto& v : std::filesystem::directory_iterator(repo + "/" + w.model)) {
        if (v.path().filename().string()[0] != '.') model_path = (v.path() / "model.onnx").string();
      }
      Ort::Session session(env, model_path.c_str(), so);
      for (int c : concurrencies) {
        Result base = Measure(c, seconds, [&] { return DirectCaller(session, w); });
        PrintRow(w.label, "direct", c, base, base);
        for (const auto& mode : modes) {
          PrintRow(w.label, mode, c,
                   Measure(c, seconds,
                           [&] {
                             return mode == "grpc" ? GrpcCaller(agent.grpc, w)
                                                   : HttpCaller(agent.http, w, mode == "binary");
                           }),
                   base);
        }
      }
    }
    if (monitoring) {
      printf(
          "\nDrift monitoring (input x and output y of dense64 [1,64]; medians of 6 rounds in "
          "ABBA order; +p50 and x_rps against the same model unmonitored):\n");
      Workload off{"dense64 unmonitored", "dense", {{"x", "FP32", {1, 64}, RandomFloats(64, 1)}}};
      Workload on{
          "dense64 monitored", "dense_monitored", {{"x", "FP32", {1, 64}, RandomFloats(64, 1)}}};
      for (const char* mode : {"binary", "grpc"}) {
        for (int c : {1, 16}) {
          auto caller = [&](const Workload& w) {
            return std::string(mode) == "grpc" ? GrpcCaller(agent.grpc, w)
                                               : HttpCaller(agent.http, w, true);
          };
          std::vector<Result> offs, ons;
          // ABBA: neither arm always goes first (a warm or cold server would favour one).
          for (int round = 0; round < 6; ++round) {
            const bool off_first = round % 4 == 0 || round % 4 == 3;
            for (int arm = 0; arm < 2; ++arm) {
              if ((arm == 0) == off_first)
                offs.push_back(Measure(c, seconds, [&] { return caller(off); }));
              else
                ons.push_back(Measure(c, seconds, [&] { return caller(on); }));
            }
          }
          auto median = [](std::vector<Result> v) {
            std::sort(v.begin(), v.end(),
                      [](const Result& a, const Result& b) { return a.rps < b.rps; });
            return v[v.size() / 2];
          };
          Result a = median(offs), b = median(ons);
          PrintRow(off.label, mode, c, a, a);
          PrintRow(on.label, mode, c, b, a);
        }
      }
    }
    if (batching) {
      printf(
          "\nDynamic batching, mlp 4x1024x1024 (16 MB of weights), one row per request, "
          "concurrency 16:\n");
      Workload off{"mlp unbatched", "mlp", {{"x", "FP32", {1, 1024}, RandomFloats(1024, 4)}}};
      Workload on{"mlp_batched", "mlp_batched", {{"x", "FP32", {1, 1024}, RandomFloats(1024, 4)}}};
      for (const char* mode : {"grpc", "binary"}) {
        auto caller = [&](const Workload& w) {
          return std::string(mode) == "grpc" ? GrpcCaller(agent.grpc, w)
                                             : HttpCaller(agent.http, w, true);
        };
        Result a = Measure(16, seconds, [&] { return caller(off); });
        Result b = Measure(16, seconds, [&] { return caller(on); });
        PrintRow(off.label, mode, 16, a, a);
        PrintRow(on.label, mode, 16, b, a);
      }
    }
    if (!node_modules.empty()) {
      printf(
          "\nJSON dense64 [1,64] (a dense ReLU layer): outpostd against a Node.js server with "
          "onnxruntime-node on the same model (medians of 4 rounds each, in ABBA order):\n");
      std::string model_path;
      for (const auto& v : std::filesystem::directory_iterator(repo + "/dense"))
        if (v.path().filename().string()[0] != '.') model_path = (v.path() / "model.onnx").string();
      NodeServer node(node_server, node_modules, model_path, "dense", 18700 + getpid() % 100);
      Workload w{"dense64 [1,64] JSON", "dense", {{"x", "FP32", {1, 64}, RandomFloats(64, 1)}}};
      for (int c : {1, 16}) {
        std::vector<Result> ours, theirs;
        for (int round = 0; round < 4; ++round) {
          const bool ours_first = round % 4 == 0 || round % 4 == 3;
          for (int arm = 0; arm < 2; ++arm) {
            if ((arm == 0) == ours_first)
              ours.push_back(Measure(c, seconds, [&] { return HttpCaller(agent.http, w, false); }));
            else
              theirs.push_back(
                  Measure(c, seconds, [&] { return HttpCaller(node.port, w, false); }));
          }
        }
        auto median = [](std::vector<Result> v) {
          std::sort(v.begin(), v.end(),
                    [](const Result& a, const Result& b) { return a.rps < b.rps; });
          return v[v.size() / 2];
        };
        Result a = median(theirs), b = median(ours);
        PrintRow("node+ort-node", "json", c, a, a);
        PrintRow("outpostd", "json", c, b, a);
      }
    }
    if (frame) {
      printf(
          "\nA 1080p RGB uint8 camera frame (6.2 MB) in, channel means out (frame_mean): the "
          "frame in the body (binary HTTP, gRPC) against in system shared memory (shm; the "
          "client copies the frame into its region on every call):\n");
      std::string pixels(1080 * 1920 * 3, '\0');
      std::mt19937 rng(9);
      for (auto& c : pixels) c = static_cast<char>(rng());
      Workload w{
          "frame 1080p uint8", "frame_mean", {{"frame", "UINT8", {1, 1080, 1920, 3}, pixels}}};
      Ort::SessionOptions so;
      so.SetIntraOpNumThreads(hw);
      std::string model_path;
      for (const auto& v : std::filesystem::directory_iterator(repo + "/frame_mean"))
        if (v.path().filename().string()[0] != '.') model_path = (v.path() / "model.onnx").string();
      Ort::Session session(env, model_path.c_str(), so);
      for (int c : {1, 4}) {
        Result base = Measure(c, seconds, [&] { return DirectCaller(session, w); });
        PrintRow(w.label, "direct", c, base, base);
        Result binary = Measure(c, seconds, [&] { return HttpCaller(agent.http, w, true); });
        PrintRow(w.label, "binary", c, binary, base);
        PrintRow(w.label, "grpc", c, Measure(c, seconds, [&] { return GrpcCaller(agent.grpc, w); }),
                 base);
        Result shm = Measure(c, seconds, [&] { return ShmHttpCaller(agent.http, w); });
        PrintRow(w.label, "shm", c, shm, base);
        printf("  added p50 at c=%d: binary %+.0f us, shm %+.0f us: shm adds %.1fx less\n", c,
               binary.p50_us - base.p50_us, shm.p50_us - base.p50_us,
               (binary.p50_us - base.p50_us) / std::max(1.0, shm.p50_us - base.p50_us));
      }
    }
  }
  {
    // Startup and idle memory with the samples, loaded from their ORT-format copies (the
    // default; the first start makes them) and as ONNX, side by side.
    const std::vector<std::pair<const char*, std::vector<std::string>>> loads = {
        {"ORT-format copies", {}}, {"as ONNX", {"--no-ort-format-models"}}};
    const std::string sample_repo = repo + "-samples", empty_repo = repo + "-empty";
    std::filesystem::copy(samples, sample_repo, std::filesystem::copy_options::recursive);
    std::filesystem::create_directories(empty_repo);
    AgentProcess(bin, sample_repo, 18800 + getpid() % 100, 0);  // makes the copies
    auto median_start = [&](bool cold, const std::vector<std::string>& extra) {
      std::vector<double> ms;
      for (int i = 0; i < 3; ++i) {
        if (cold) {
          sync();
          std::ofstream drop("/proc/sys/vm/drop_caches");
          if (!(drop << "3" << std::flush)) return -1.0;
        }
        AgentProcess a(bin, sample_repo, 18800 + getpid() % 100, 0, extra);
        ms.push_back(a.ready_ms);
      }
      std::sort(ms.begin(), ms.end());
      return ms[1];
    };
    printf("\nStartup, exec to /v2/health/ready with the 6 sample models (median of 3):\n");
    for (const auto& [label, extra] : loads) {
      const double warm = median_start(false, extra), cold = median_start(true, extra);
      printf("  %-18s %4.0f ms with the page cache warm, ", label, warm);
      if (cold < 0)
        printf("cold not measured (dropping the page cache needs root)\n");
      else
        printf("%4.0f ms after dropping it\n", cold);
    }
    printf("\nIdle outpostd with the 6 sample models loaded (%.1f MB of weights):\n",
           static_cast<double>(ModelFileBytes(sample_repo)) / 1e6);
    auto idle_memory = [&](const char* label, const std::string& models,
                           const std::vector<std::string>& extra) {
      AgentProcess idle(bin, models, 18800 + getpid() % 100, 0, extra);
      std::this_thread::sleep_for(std::chrono::seconds(2));
      const auto m = idle.Memory();
      printf("  %-18s RSS %5.1f MB: anonymous %5.1f MB, file-backed %5.1f MB\n", label,
             m.rss_kib / 1024.0, m.anon_kib / 1024.0, m.file_kib / 1024.0);
    };
    for (const auto& [label, extra] : loads) idle_memory(label, sample_repo, extra);
    idle_memory("no models", empty_repo, {});
    std::filesystem::remove_all(sample_repo);
    std::filesystem::remove_all(empty_repo);
  }
  std::filesystem::remove_all(repo);
  std::filesystem::remove_all("/tmp/outpost-bench-auth-" + std::to_string(getpid()));
  return 0;
}
