// Local generation speed: Outpost's generation loop (ChatModel: KV cache, sampler, streaming
// detokenizer, stop checks) against the baseline the issue names, a plain greedy loop calling
// ONNX Runtime directly on the same model file with the same thread count. Both run greedy
// from the same prompt ids for the same number of tokens, alternating, several rounds;
// medians are printed with ratios (ours / baseline).
//
//   python3 tests/fixtures/tiny_llm.py /tmp/llm100m --hidden 768 --layers 8 --heads 12
//       --ffn 2048 --vocab 32000 [--weights int4]   (one line)
//   build/bin/chat_bench /tmp/llm100m --prompt 128 --tokens 64 --rounds 5
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "llm/chat_model.h"
#include "runtime/ort_session.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Run {
  double ttft_s = 0;  // prompt in, first token out
  double step_s = 0;  // mean per generated token after the first
  std::vector<int32_t> ids;
};

// The baseline: what a user would write against ORT's C++ API without Outpost.
class PlainLoop {
 public:
  PlainLoop(const fs::path& model, int threads) {
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(threads);
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    session_ = Ort::Session(outpost::OrtEnv(), model.c_str(), so);
    Ort::AllocatorWithDefaultOptions alloc;
    for (size_t i = 0; i < session_.GetInputCount(); ++i)
      inputs_.push_back(session_.GetInputNameAllocated(i, alloc).get());
    for (size_t i = 0; i < session_.GetOutputCount(); ++i)
      outputs_.push_back(session_.GetOutputNameAllocated(i, alloc).get());
    auto past = session_.GetInputTypeInfo(3).GetTensorTypeAndShapeInfo().GetShape();
    heads_ = past[1];
    head_dim_ = past[3];
    layers_ = static_cast<int>((inputs_.size() - 3) / 2);
  }

  Run Generate(const std::vector<int32_t>& prompt, int n) {
    Run run;
    auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::AllocatorWithDefaultOptions alloc;
    std::vector<Ort::Value> past;
    const std::array<int64_t, 4> empty{1, heads_, 0, head_dim_};
    for (int i = 0; i < 2 * layers_; ++i)
      past.push_back(Ort::Value::CreateTensor<float>(alloc, empty.data(), 4));
    std::vector<int64_t> ids(prompt.begin(), prompt.end());
    int64_t total = 0;
    auto start = Clock::now();
    Clock::time_point first;
    for (int step = 0; step < n; ++step) {
      const int64_t s = static_cast<int64_t>(ids.size());
      std::vector<int64_t> mask(static_cast<size_t>(total + s), 1), pos(static_cast<size_t>(s));
      std::iota(pos.begin(), pos.end(), total);
      std::array<int64_t, 2> shape{1, s}, mshape{1, total + s};
      std::vector<Ort::Value> in;
      in.push_back(Ort::Value::CreateTensor<int64_t>(mem, ids.data(), ids.size(), shape.data(), 2));
      in.push_back(
          Ort::Value::CreateTensor<int64_t>(mem, mask.data(), mask.size(), mshape.data(), 2));
      in.push_back(Ort::Value::CreateTensor<int64_t>(mem, pos.data(), pos.size(), shape.data(), 2));
      for (auto& p : past) in.push_back(std::move(p));
      std::vector<const char*> in_names, out_names;
      for (auto& x : inputs_) in_names.push_back(x.c_str());
      for (auto& x : outputs_) out_names.push_back(x.c_str());
      auto out = session_.Run(Ort::RunOptions{nullptr}, in_names.data(), in.data(), in.size(),
                              out_names.data(), out_names.size());
      auto shape_out = out[0].GetTensorTypeAndShapeInfo().GetShape();
      const float* logits = out[0].GetTensorData<float>() + (shape_out[1] - 1) * shape_out[2];
      int32_t next = static_cast<int32_t>(std::max_element(logits, logits + shape_out[2]) - logits);
      if (step == 0) first = Clock::now();
      run.ids.push_back(next);
      past.clear();
      for (size_t i = 1; i < out.size(); ++i) past.push_back(std::move(out[i]));
      total += s;
      ids = {next};
    }
    auto end = Clock::now();
    run.ttft_s = std::chrono::duration<double>(first - start).count();
    run.step_s = std::chrono::duration<double>(end - first).count() / std::max(1, n - 1);
    return run;
  }

 private:
  Ort::Session session_{nullptr};
  std::vector<std::string> inputs_, outputs_;
  int64_t heads_ = 0, head_dim_ = 0;
  int layers_ = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  CLI::App app{"chat_bench: Outpost's generation loop against a plain ORT greedy loop"};
  std::string dir;
  int prompt_len = 128, tokens = 64, rounds = 5, threads = 0;
  app.add_option("dir", dir, "Model directory (model.onnx, tokenizer.json, ...)")->required();
  app.add_option("--prompt", prompt_len, "Prompt tokens")->capture_default_str();
  app.add_option("--tokens", tokens, "Tokens to generate")->capture_default_str();
  app.add_option("--rounds", rounds, "Alternating rounds (medians are reported)")
      ->capture_default_str();
  app.add_option("--threads", threads, "Intra-op threads, both sides (0: one per core)");
  CLI11_PARSE(app, argc, argv);
  if (threads == 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  outpost::ConfigureOnnxRuntime(threads, 1, true);

  const fs::path model = fs::path(dir) / "model.onnx";
  outpost::ChatModel chat(model, {{"warmup", false}, {"context_length", 2048}}, {});
  PlainLoop baseline(model, threads);
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
  for (int i = 0; i < prompt_len; ++i) prompt[static_cast<size_t>(i)] = 40 + (i * 7) % 200;

  outpost::GenerateOptions greedy;
  greedy.sampling.temperature = 0;
  greedy.max_tokens = tokens;
  auto ours = [&] {
    auto r = chat.Generate(prompt, greedy, [](const outpost::TextChunk&) {});
    Run run;
    run.ttft_s = r.time_to_first_token_s;
    run.step_s = (r.total_s - r.time_to_first_token_s) / std::max(1, r.completion_tokens - 1);
    run.ids = r.ids;
    return run;
  };
  // Warm both (first runs allocate arenas and prepack weights).
  auto check_ours = ours();
  auto check_base = baseline.Generate(prompt, tokens);
  size_t same = 0;
  while (same < check_ours.ids.size() && same < check_base.ids.size() &&
         check_ours.ids[same] == check_base.ids[same])
    ++same;
  std::printf("greedy tokens identical for %zu of %d\n", same, tokens);
  std::vector<double> bt, bs, ot, os;
  for (int r = 0; r < rounds; ++r) {
    auto b = baseline.Generate(prompt, tokens);
    auto o = ours();
    bt.push_back(b.ttft_s);
    bs.push_back(b.step_s);
    ot.push_back(o.ttft_s);
    os.push_back(o.step_s);
  }
  const double b_ttft = Median(bt), b_step = Median(bs), o_ttft = Median(ot), o_step = Median(os);
  auto json = nlohmann::json::parse(outpost::ReadFile(fs::path(dir) / "config.json"));
  std::printf(
      "model %s: hidden %d, layers %d, vocab %d; prompt %d tokens, %d generated, %d threads, "
      "%d rounds (medians)\n",
      dir.c_str(), json.value("hidden_size", 0), json.value("num_hidden_layers", 0),
      json.value("vocab_size", 0), prompt_len, tokens, threads, rounds);
  std::printf("%-22s %14s %14s %12s %14s\n", "", "prompt tok/s", "gen tok/s", "TTFT ms",
              "step ms (KV)");
  std::printf("%-22s %14.1f %14.2f %12.2f %14.3f\n", "plain ORT greedy loop", prompt_len / b_ttft,
              1.0 / b_step, b_ttft * 1e3, b_step * 1e3);
  std::printf("%-22s %14.1f %14.2f %12.2f %14.3f\n", "outpost", prompt_len / o_ttft, 1.0 / o_step,
              o_ttft * 1e3, o_step * 1e3);
  std::printf(
      "ratios (outpost / baseline): generation speed %.3f (target >= 0.95), KV step cost "
      "%.3f (target <= 1.10), TTFT %.3f\n",
      b_step / o_step, o_step / b_step, o_ttft / b_ttft);
  return 0;
}
