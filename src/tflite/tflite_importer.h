// Translates a TensorFlow Lite model into an equivalent ONNX model, so that ONNX Runtime (and
// every execution provider it has) serves .tflite files. Layouts stay as TFLite has them
// (NHWC); spatial operators are wrapped in transposes that ORT's layout optimizer cancels.
// Quantized tensors stay integers between operators: an operator reads them through
// DequantizeLinear and writes through QuantizeLinear (QDQ), which ORT fuses into integer
// kernels. IF and WHILE become ONNX If and Loop.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::tflite {

struct ImportOptions {
  // Shapes that replace the file's for the named inputs (-1: any size), for models whose
  // TFLite interpreter is meant to resize them at run time.
  std::map<std::string, std::vector<int64_t>> input_shapes;
};

struct ImportResult {
  std::string onnx;                    // a serialized onnx.ModelProto
  std::vector<std::string> operators;  // the TFLite operators the model uses, sorted
  size_t operator_count = 0;           // operators translated, over all subgraphs
};

// Throws Error(kInvalidArgument) for a file that does not verify, an operator without a
// translation (named, with where it is), or options a translation cannot honour.
ImportResult ImportTflite(std::string_view flatbuffer, const ImportOptions& options = {});

}  // namespace outpost::tflite
