// What an operator's translation sees: its TFLite operator and tensors, the graph it writes
// into, and the mapping from TFLite tensors to ONNX values of the subgraph being translated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tflite/onnx_graph.h"
#include "tflite/tflite_file.h"

namespace outpost::tflite {

class Importer;

// One translated TFLite subgraph (the main graph, or a branch or loop body), with the values
// its tensors have in the ONNX graph it is emitted into.
struct Scope {
  size_t subgraph = 0;
  GraphBuilder* graph = nullptr;
  std::vector<std::string> values;        // by tensor index; empty until produced
  std::vector<std::string> float_values;  // dequantized views, made once per tensor
  int depth = 0;
};

class OpContext {
 public:
  OpContext(Importer& importer, Scope& scope, const ::tflite::Operator& op, size_t index)
      : importer_(importer), scope_(scope), op_(op), index_(index) {}

  const ::tflite::Operator& op() const { return op_; }
  GraphBuilder& g() { return *scope_.graph; }
  Importer& importer() { return importer_; }
  Scope& scope() { return scope_; }
  const TfliteFile& file() const;

  size_t input_count() const { return op_.inputs() ? op_.inputs()->size() : 0; }
  size_t output_count() const { return op_.outputs() ? op_.outputs()->size() : 0; }
  bool HasInput(size_t i) const;
  const ::tflite::Tensor& InputTensor(size_t i) const;
  const ::tflite::Tensor& OutputTensor(size_t i) const;

  // The value of input i as an operator computes with it: dequantized to float when the
  // tensor is quantized, otherwise as stored.
  std::string In(size_t i);
  // The value of input i as stored (quantized integers stay integers).
  std::string RawIn(size_t i);
  // Makes `value` output i, quantizing it when the TFLite tensor is quantized.
  void SetOut(size_t i, const std::string& value);
  // Same, with the operator's fused activation applied first.
  void SetOutActivated(size_t i, const std::string& value, ::tflite::ActivationFunctionType act);

  // The constant contents of input i, converted; throws when the input is not constant.
  std::vector<int64_t> ConstInts(size_t i) const;
  std::vector<float> ConstFloats(size_t i) const;
  bool IsConst(size_t i) const;
  // The static shape the file records for input/output i (may be a placeholder where
  // shape_signature has -1).
  std::vector<int64_t> InputShape(size_t i) const;
  std::vector<int64_t> OutputShape(size_t i) const;
  int32_t OnnxType(const ::tflite::Tensor& t) const;

  // NHWC <-> NCHW for spatial operators.
  std::string ToNchw(const std::string& v) {
    return g().Op("Transpose", {v}, {IntsAttr("perm", {0, 3, 1, 2})});
  }
  std::string ToNhwc(const std::string& v) {
    return g().Op("Transpose", {v}, {IntsAttr("perm", {0, 2, 3, 1})});
  }

  [[noreturn]] void Unsupported(const std::string& why) const;
  std::string Where() const;

 private:
  Importer& importer_;
  Scope& scope_;
  const ::tflite::Operator& op_;
  size_t index_;
};

using Translator = void (*)(OpContext&);
// The translation of a builtin operator code, or of a custom operator by name; null if none.
Translator FindBuiltinTranslator(int32_t code);
Translator FindCustomTranslator(const std::string& custom_code);

// Control flow needs to translate other subgraphs into new ONNX graphs.
class Importer {
 public:
  Importer(const TfliteFile& file, NameTable& names) : file_(file), names_(names) {}
  const TfliteFile& file() const { return file_; }
  NameTable& names() { return names_; }
  // Translates subgraph `index` into `graph`, its inputs bound to `inputs`; returns the
  // values of its outputs.
  std::vector<std::string> EmitSubgraph(size_t index, GraphBuilder& graph,
                                        const std::vector<std::string>& inputs, int depth);
  // The value of a tensor in a scope, materialising a constant on first use.
  std::string Value(Scope& scope, int32_t tensor);

  std::vector<std::string> used_operators;
  size_t operator_count = 0;

 private:
  const TfliteFile& file_;
  NameTable& names_;
};

// Data of a constant tensor (dense, after DENSIFY at import if it was sparse) as an ONNX tensor.
onnx::TensorProto ConstantTensor(const TfliteFile& file, const ::tflite::Tensor& t);
// ONNX element type of a TFLite tensor type, or 0 when there is none.
int32_t OnnxElementType(::tflite::TensorType type);

}  // namespace outpost::tflite
