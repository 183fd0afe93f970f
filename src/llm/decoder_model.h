// A decoder-only language model exported to ONNX in the layout of Hugging Face Optimum and the
// onnx-community: input_ids, attention_mask, position_ids and past_key_values.N.key/value in;
// logits and present.N.key/value out (fp32 or fp16; the weights may be anything ORT runs,
// int8 or 4-bit MatMulNBits included). A model exported without the cache inputs is run by
// recomputing the whole sequence each step.
#pragma once

#include <onnxruntime_cxx_api.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "runtime/model.h"

namespace outpost {

// One sequence's cache: the last step's present.* values, fed back as past_key_values.*.
struct KvCache {
  std::vector<Ort::Value> past;  // key, value per layer
  std::vector<int32_t> tokens;   // what the cache (or, without one, the model) has seen
};

struct DecoderLayout {
  int layers = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  bool has_cache = false;
  bool has_position_ids = false;
  bool has_attention_mask = false;
  bool fp16 = false;  // past/present element type
  bool logits_fp16 = false;
  std::string logits_to_keep_input;  // newer exports compute logits for the last N only
};

class DecoderModel {
 public:
  // `config` is config.json (may be null): num_key_value_heads / head_dim when the model's
  // own shapes are symbolic. Throws Error(kInvalidArgument) for a model of another layout.
  DecoderModel(const std::filesystem::path& path, const RuntimeOptions& options,
               const nlohmann::json& config);

  // Feeds `ids` after what `cache` holds and returns the logits of the last position (fp32).
  // Safe to call from several threads at once with different caches.
  std::vector<float> Step(std::span<const int32_t> ids, KvCache& cache);

  const DecoderLayout& layout() const { return layout_; }
  int64_t vocab_size() const { return vocab_size_; }

 private:
  Ort::Session session_{nullptr};
  DecoderLayout layout_;
  int64_t vocab_size_ = 0;
  std::vector<std::string> input_names_, output_names_;
};

}  // namespace outpost
