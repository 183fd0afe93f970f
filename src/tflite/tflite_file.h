// A TensorFlow Lite flatbuffer checked before anything reads it: the flatbuffers Verifier
// (every offset inside the buffer, nesting and table counts bounded), then every index the
// importer follows (tensors, buffers, operator codes, subgraphs) and every buffer's bytes.
// The file is untrusted input; after Open() succeeds no accessor reads out of bounds.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "schema_generated.h"

namespace outpost::tflite {

class TfliteFile {
 public:
  // Throws Error(kInvalidArgument) naming what is wrong. `bytes` must outlive the file.
  static TfliteFile Open(std::string_view bytes);

  const ::tflite::Model& model() const { return *model_; }
  size_t size() const { return bytes_.size(); }
  size_t subgraph_count() const { return model_->subgraphs()->size(); }
  const ::tflite::SubGraph& subgraph(size_t i) const { return *model_->subgraphs()->Get(i); }

  // The operator's builtin code (CUSTOM for custom ops) and a name for messages:
  // "CONV_2D", "CUSTOM:Convolution2DTransposeBias", "BUILTIN_203" for codes newer than the schema.
  int32_t BuiltinCode(const ::tflite::Operator& op) const;
  std::string OperatorName(const ::tflite::Operator& op) const;
  std::string CustomCode(const ::tflite::Operator& op) const;

  // The constant bytes of a tensor, empty when it has none (an activation or graph input).
  std::span<const uint8_t> TensorData(const ::tflite::Tensor& tensor) const;
  // A constant: it has bytes, or it has no elements (a shape [0] list needs none).
  bool IsConstant(const ::tflite::Tensor& tensor) const;

 private:
  std::string_view bytes_;
  const ::tflite::Model* model_ = nullptr;
};

// Element size of a TFLite tensor type in bytes; 0 for types the importer does not handle.
size_t TfliteElementSize(::tflite::TensorType type);
std::string TfliteTypeName(::tflite::TensorType type);

}  // namespace outpost::tflite
