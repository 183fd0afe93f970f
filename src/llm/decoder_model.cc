#include "llm/decoder_model.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <map>
#include <numeric>

#include "core/error.h"
#include "runtime/ort_session.h"

namespace outpost {
namespace {

std::string PastName(int layer, const char* kind) {
  return "past_key_values." + std::to_string(layer) + "." + kind;
}
std::string PresentName(int layer, const char* kind) {
  return "present." + std::to_string(layer) + "." + kind;
}

float HalfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace

DecoderModel::DecoderModel(const std::filesystem::path& path, const RuntimeOptions& options,
                           const nlohmann::json& config) {
  try {
    Placement placement;
    session_ = CreatePlacedSession(
        options, path.string(),
        [&](Ort::SessionOptions& so) { return Ort::Session(OrtEnv(), path.c_str(), so); },
        placement);
  } catch (const Ort::Exception& e) {
    Fail(ErrorCode::kInvalidArgument, "cannot load " + path.string() + ": " + e.what());
  }
  Ort::AllocatorWithDefaultOptions alloc;
  std::map<std::string, Ort::TypeInfo> inputs, outputs;
  for (size_t i = 0; i < session_.GetInputCount(); ++i)
    inputs.emplace(session_.GetInputNameAllocated(i, alloc).get(), session_.GetInputTypeInfo(i));
  for (size_t i = 0; i < session_.GetOutputCount(); ++i)
    outputs.emplace(session_.GetOutputNameAllocated(i, alloc).get(), session_.GetOutputTypeInfo(i));
  auto need = [&](bool ok, const std::string& what) {
    if (!ok)
      Fail(ErrorCode::kInvalidArgument,
           path.filename().string() + " is not a decoder in the Optimum layout: " + what);
  };
  need(inputs.count("input_ids"), "no input_ids input");
  need(outputs.count("logits"), "no logits output");
  layout_.has_attention_mask = inputs.count("attention_mask");
  layout_.has_position_ids = inputs.count("position_ids");
  for (const char* name : {"logits_to_keep", "num_logits_to_keep"})
    if (inputs.count(name)) layout_.logits_to_keep_input = name;

  auto logits = outputs.at("logits").GetTensorTypeAndShapeInfo();
  layout_.logits_fp16 = logits.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  need(layout_.logits_fp16 || logits.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
       "logits are neither float32 nor float16");
  auto logits_shape = logits.GetShape();
  need(logits_shape.size() == 3, "logits are not [batch, sequence, vocabulary]");
  vocab_size_ = logits_shape[2] > 0 ? logits_shape[2] : config.value("vocab_size", int64_t{0});

  while (inputs.count(PastName(layout_.layers, "key"))) ++layout_.layers;
  layout_.has_cache = layout_.layers > 0;
  if (layout_.has_cache) {
    auto past = inputs.at(PastName(0, "key")).GetTensorTypeAndShapeInfo();
    auto shape = past.GetShape();
    need(shape.size() == 4, "past_key_values.0.key is not [batch, heads, sequence, head_dim]");
    layout_.fp16 = past.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    need(layout_.fp16 || past.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
         "the cache is neither float32 nor float16");
    layout_.kv_heads = shape[1] > 0 ? shape[1]
                                    : config.value("num_key_value_heads",
                                                   config.value("num_attention_heads", int64_t{0}));
    layout_.head_dim = shape[3] > 0 ? shape[3] : config.value("head_dim", int64_t{0});
    if (layout_.head_dim <= 0 && config.contains("hidden_size") &&
        config.value("num_attention_heads", 0) > 0)
      layout_.head_dim =
          config.at("hidden_size").get<int64_t>() / config.at("num_attention_heads").get<int64_t>();
    need(layout_.kv_heads > 0 && layout_.head_dim > 0,
         "the cache's head count and size are neither in the model nor in config.json");
    for (int l = 0; l < layout_.layers; ++l)
      for (const char* kind : {"key", "value"}) {
        need(inputs.count(PastName(l, kind)), "no " + PastName(l, kind));
        need(outputs.count(PresentName(l, kind)), "no " + PresentName(l, kind));
      }
  }
  need(vocab_size_ > 0, "the vocabulary size is neither in the model nor in config.json");

  input_names_.push_back("input_ids");
  if (layout_.has_attention_mask) input_names_.push_back("attention_mask");
  if (layout_.has_position_ids) input_names_.push_back("position_ids");
  if (!layout_.logits_to_keep_input.empty()) input_names_.push_back(layout_.logits_to_keep_input);
  output_names_.push_back("logits");
  for (int l = 0; l < layout_.layers; ++l)
    for (const char* kind : {"key", "value"}) {
      input_names_.push_back(PastName(l, kind));
      output_names_.push_back(PresentName(l, kind));
    }
}

std::vector<float> DecoderModel::Step(std::span<const int32_t> ids, KvCache& cache) {
  if (ids.empty()) Fail(ErrorCode::kInvalidArgument, "nothing to feed the model");
  // Without a cache the whole sequence goes in every time.
  std::vector<int32_t> all;
  if (!layout_.has_cache) {
    all = cache.tokens;
    all.insert(all.end(), ids.begin(), ids.end());
    ids = all;
  }
  const int64_t past_len = layout_.has_cache ? static_cast<int64_t>(cache.tokens.size()) : 0;
  const int64_t n = static_cast<int64_t>(ids.size());
  auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<int64_t> input_ids(ids.begin(), ids.end());
  std::vector<int64_t> mask(static_cast<size_t>(past_len + n), 1);
  std::vector<int64_t> positions(static_cast<size_t>(n));
  std::iota(positions.begin(), positions.end(), past_len);
  int64_t keep = 1;
  const std::array<int64_t, 2> ids_shape{1, n}, mask_shape{1, past_len + n};
  const std::array<int64_t, 1> keep_shape{1};

  std::vector<Ort::Value> values;
  values.push_back(Ort::Value::CreateTensor<int64_t>(memory, input_ids.data(), input_ids.size(),
                                                     ids_shape.data(), 2));
  if (layout_.has_attention_mask)
    values.push_back(
        Ort::Value::CreateTensor<int64_t>(memory, mask.data(), mask.size(), mask_shape.data(), 2));
  if (layout_.has_position_ids)
    values.push_back(Ort::Value::CreateTensor<int64_t>(memory, positions.data(), positions.size(),
                                                       ids_shape.data(), 2));
  if (!layout_.logits_to_keep_input.empty())
    values.push_back(Ort::Value::CreateTensor<int64_t>(memory, &keep, 1, keep_shape.data(), 0));
  if (layout_.has_cache) {
    if (cache.past.empty()) {
      Ort::AllocatorWithDefaultOptions alloc;
      const std::array<int64_t, 4> empty{1, layout_.kv_heads, 0, layout_.head_dim};
      for (int l = 0; l < 2 * layout_.layers; ++l)
        cache.past.push_back(layout_.fp16
                                 ? Ort::Value::CreateTensor<Ort::Float16_t>(alloc, empty.data(), 4)
                                 : Ort::Value::CreateTensor<float>(alloc, empty.data(), 4));
    }
    for (auto& v : cache.past) values.push_back(std::move(v));
    cache.past.clear();
  }

  std::vector<const char*> in_names, out_names;
  for (const auto& s : input_names_) in_names.push_back(s.c_str());
  for (const auto& s : output_names_) out_names.push_back(s.c_str());
  std::vector<Ort::Value> outputs;
  try {
    outputs = session_.Run(Ort::RunOptions{nullptr}, in_names.data(), values.data(), values.size(),
                           out_names.data(), out_names.size());
  } catch (const Ort::Exception& e) {
    cache = KvCache{};  // the old cache was handed to the failed run: start over next time
    Fail(ErrorCode::kInternal, std::string("onnxruntime: ") + e.what());
  }

  auto info = outputs[0].GetTensorTypeAndShapeInfo();
  auto shape = info.GetShape();
  const int64_t rows = shape[1], vocab = shape[2];
  std::vector<float> last(static_cast<size_t>(vocab));
  const size_t offset = static_cast<size_t>((rows - 1) * vocab);
  if (layout_.logits_fp16) {
    const auto* p = outputs[0].GetTensorData<uint16_t>() + offset;
    for (int64_t i = 0; i < vocab; ++i) last[static_cast<size_t>(i)] = HalfToFloat(p[i]);
  } else {
    std::memcpy(last.data(), outputs[0].GetTensorData<float>() + offset,
                static_cast<size_t>(vocab) * sizeof(float));
  }
  for (size_t i = 1; i < outputs.size(); ++i) cache.past.push_back(std::move(outputs[i]));
  if (layout_.has_cache)
    cache.tokens.insert(cache.tokens.end(), ids.begin(), ids.end());
  else
    cache.tokens.assign(ids.begin(), ids.end());
  return last;
}

}  // namespace outpost
