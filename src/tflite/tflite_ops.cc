// The translation of each TFLite operator into ONNX (opset 17). Every translation reads its
// inputs through OpContext::In (dequantizing quantized tensors) and writes through SetOut
// (quantizing again), so one translation serves float and quantized models alike.
#include <cmath>
#include <limits>
#include <unordered_map>

#include "tflite/translation.h"

namespace outpost::tflite {
namespace {

using ::tflite::ActivationFunctionType;
using ::tflite::BuiltinOperator;

template <typename T>
const T* Options(OpContext& c) {
  const T* o = c.op().template builtin_options_as<T>();
  if (!o) c.Unsupported("its options are missing");
  return o;
}

std::string AutoPad(OpContext& c, ::tflite::Padding p) {
  if (p == ::tflite::Padding_SAME) return "SAME_UPPER";  // TensorFlow pads the extra at the end
  if (p == ::tflite::Padding_VALID) return "VALID";
  c.Unsupported("padding " + std::to_string(static_cast<int>(p)));
}

void CheckStrides(OpContext& c, int64_t h, int64_t w) {
  if (h <= 0 || w <= 0) c.Unsupported("strides and dilations must be positive");
}

int64_t Rank(OpContext& c, size_t input) {
  return static_cast<int64_t>(c.InputShape(input).size());
}

std::string ToInt64(OpContext& c, const std::string& v) {
  return c.g().Op("Cast", {v}, {IntAttr("to", onnx::TensorProto::INT64)});
}

// --- elementwise ---------------------------------------------------------

template <const char* kOp>
void Unary(OpContext& c) {
  c.SetOut(0, c.g().Op(kOp, {c.In(0)}));
}

template <const char* kOp>
void Binary(OpContext& c) {
  c.SetOut(0, c.g().Op(kOp, {c.In(0), c.In(1)}));
}

// ADD, SUB, MUL and DIV carry a fused activation in their own option tables.
template <const char* kOp, typename Opts>
void Arithmetic(OpContext& c) {
  const Opts* o = c.op().template builtin_options_as<Opts>();
  auto act =
      o ? o->fused_activation_function() : ActivationFunctionType::ActivationFunctionType_NONE;
  c.SetOutActivated(0, c.g().Op(kOp, {c.In(0), c.In(1)}), act);
}

constexpr char kAbs[] = "Abs", kCeil[] = "Ceil", kCos[] = "Cos", kExp[] = "Exp", kFloor[] = "Floor",
               kLog[] = "Log", kNeg[] = "Neg", kRelu[] = "Relu", kRound[] = "Round",
               kSigmoid[] = "Sigmoid", kSin[] = "Sin", kSqrt[] = "Sqrt", kTanh[] = "Tanh",
               kHardSwish[] = "HardSwish", kNot[] = "Not", kElu[] = "Elu", kSign[] = "Sign";
constexpr char kAdd[] = "Add", kSub[] = "Sub", kMul[] = "Mul", kDiv[] = "Div", kMax[] = "Max",
               kMin[] = "Min", kPow[] = "Pow", kGreater[] = "Greater",
               kGreaterEqual[] = "GreaterOrEqual", kLess[] = "Less", kLessEqual[] = "LessOrEqual",
               kEqual[] = "Equal", kAnd[] = "And", kOr[] = "Or", kPRelu[] = "PRelu";

void Rsqrt(OpContext& c) { c.SetOut(0, c.g().Op("Reciprocal", {c.g().Op("Sqrt", {c.In(0)})})); }
void Square(OpContext& c) {
  auto x = c.In(0);
  c.SetOut(0, c.g().Op("Mul", {x, x}));
}
void SquaredDifference(OpContext& c) {
  auto d = c.g().Op("Sub", {c.In(0), c.In(1)});
  c.SetOut(0, c.g().Op("Mul", {d, d}));
}
void NotEqual(OpContext& c) {
  c.SetOut(0, c.g().Op("Not", {c.g().Op("Equal", {c.In(0), c.In(1)})}));
}
void FloorDiv(OpContext& c) {
  if (c.InputTensor(0).type() != ::tflite::TensorType_FLOAT32)
    c.Unsupported("only float32 FLOOR_DIV is translated");
  c.SetOut(0, c.g().Op("Floor", {c.g().Op("Div", {c.In(0), c.In(1)})}));
}
void FloorMod(OpContext& c) {
  if (c.InputTensor(0).type() == ::tflite::TensorType_FLOAT32)
    c.Unsupported("only integer FLOOR_MOD is translated");
  c.SetOut(0, c.g().Op("Mod", {c.In(0), c.In(1)}));  // fmod=0: the sign of the divisor, as TF
}
void Relu6(OpContext& c) {
  c.SetOut(0, c.g().Op("Clip", {c.In(0), c.g().Floats({0}, true), c.g().Floats({6}, true)}));
}
void ReluN1To1(OpContext& c) {
  c.SetOut(0, c.g().Op("Clip", {c.In(0), c.g().Floats({-1}, true), c.g().Floats({1}, true)}));
}
void LeakyRelu(OpContext& c) {
  c.SetOut(0, c.g().Op("LeakyRelu", {c.In(0)},
                       {FloatAttr("alpha", Options<::tflite::LeakyReluOptions>(c)->alpha())}));
}
void Gelu(OpContext& c) {
  const auto* o = c.op().builtin_options_as_GeluOptions();
  auto& g = c.g();
  auto x = c.In(0);
  std::string inner;
  if (o && o->approximate()) {  // 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
    auto x3 = g.Op("Mul", {g.Op("Mul", {x, x}), x});
    auto s = g.Op("Add", {x, g.Op("Mul", {x3, g.Floats({0.044715f}, true)})});
    inner = g.Op("Tanh",
                 {g.Op("Mul", {s, g.Floats({std::sqrt(2.0f / static_cast<float>(M_PI))}, true)})});
  } else {  // 0.5x(1 + erf(x/sqrt(2)))
    inner = g.Op("Erf", {g.Op("Mul", {x, g.Floats({static_cast<float>(M_SQRT1_2)}, true)})});
  }
  auto one_plus = g.Op("Add", {inner, g.Floats({1.0f}, true)});
  c.SetOut(0, g.Op("Mul", {g.Op("Mul", {x, one_plus}), g.Floats({0.5f}, true)}));
}
void Softmax(OpContext& c) {
  float beta = Options<::tflite::SoftmaxOptions>(c)->beta();
  auto x = c.In(0);
  if (beta != 1.0f) x = c.g().Op("Mul", {x, c.g().Floats({beta}, true)});
  c.SetOut(0, c.g().Op("Softmax", {x}, {IntAttr("axis", -1)}));
}
void LogSoftmax(OpContext& c) {
  c.SetOut(0, c.g().Op("LogSoftmax", {c.In(0)}, {IntAttr("axis", -1)}));
}
void L2Normalization(OpContext& c) {
  c.SetOut(0, c.g().Op("LpNormalization", {c.In(0)}, {IntAttr("axis", -1), IntAttr("p", 2)}));
}
void Select(OpContext& c) { c.SetOut(0, c.g().Op("Where", {c.In(0), c.In(1), c.In(2)})); }

// --- quantization and types ----------------------------------------------

void Dequantize(OpContext& c) {
  auto v = c.In(0);
  if (c.InputTensor(0).type() == ::tflite::TensorType_FLOAT16)
    v = c.g().Op("Cast", {v}, {IntAttr("to", onnx::TensorProto::FLOAT)});
  c.SetOut(0, v);
}
void Quantize(OpContext& c) { c.SetOut(0, c.In(0)); }
// A sparse constant was made dense when it was read (Importer::Value).
void Densify(OpContext& c) { c.SetOut(0, c.RawIn(0)); }
void Cast(OpContext& c) {
  c.SetOut(0, c.g().Op("Cast", {c.In(0)}, {IntAttr("to", c.OnnxType(c.OutputTensor(0)))}));
}

// --- convolution and pooling -----------------------------------------------

std::string OhwiToOihw(OpContext& c, const std::string& w) {
  return c.g().Op("Transpose", {w}, {IntsAttr("perm", {0, 3, 1, 2})});
}

void Conv2D(OpContext& c) {
  const auto* o = Options<::tflite::Conv2DOptions>(c);
  CheckStrides(c, o->stride_h(), o->stride_w());
  CheckStrides(c, o->dilation_h_factor(), o->dilation_w_factor());
  auto in_shape = c.InputShape(0), w_shape = c.InputShape(1);
  if (in_shape.size() != 4 || w_shape.size() != 4)
    c.Unsupported("CONV_2D needs rank-4 input and filter");
  if (w_shape[3] <= 0 || in_shape[3] % w_shape[3] != 0)
    c.Unsupported("input channels are not a multiple of the filter's");
  std::vector<std::string> inputs{c.ToNchw(c.In(0)), OhwiToOihw(c, c.In(1))};
  if (c.HasInput(2)) inputs.push_back(c.In(2));
  auto y = c.g().Op("Conv", inputs,
                    {IntsAttr("strides", {o->stride_h(), o->stride_w()}),
                     IntsAttr("dilations", {o->dilation_h_factor(), o->dilation_w_factor()}),
                     StringAttr("auto_pad", AutoPad(c, o->padding())),
                     IntAttr("group", in_shape[3] / w_shape[3])});
  c.SetOutActivated(0, c.ToNhwc(y), o->fused_activation_function());
}

void DepthwiseConv2D(OpContext& c) {
  const auto* o = Options<::tflite::DepthwiseConv2DOptions>(c);
  CheckStrides(c, o->stride_h(), o->stride_w());
  CheckStrides(c, o->dilation_h_factor(), o->dilation_w_factor());
  auto in_shape = c.InputShape(0), w_shape = c.InputShape(1);
  if (in_shape.size() != 4 || w_shape.size() != 4 || w_shape[0] != 1)
    c.Unsupported("DEPTHWISE_CONV_2D needs a rank-4 input and a [1,H,W,C*M] filter");
  int64_t channels = in_shape[3];
  if (channels <= 0 || w_shape[3] % channels != 0)
    c.Unsupported("filter channels are not a multiple of the input's");
  // [1,H,W,C*M] -> [C*M,1,H,W]: a grouped convolution with one group per input channel.
  auto w = c.g().Op("Transpose", {c.In(1)}, {IntsAttr("perm", {3, 0, 1, 2})});
  std::vector<std::string> inputs{c.ToNchw(c.In(0)), w};
  if (c.HasInput(2)) inputs.push_back(c.In(2));
  auto y = c.g().Op("Conv", inputs,
                    {IntsAttr("strides", {o->stride_h(), o->stride_w()}),
                     IntsAttr("dilations", {o->dilation_h_factor(), o->dilation_w_factor()}),
                     StringAttr("auto_pad", AutoPad(c, o->padding())), IntAttr("group", channels)});
  c.SetOutActivated(0, c.ToNhwc(y), o->fused_activation_function());
}

// ConvTranspose with the padding TensorFlow chose for the output size it was asked for.
void EmitTransposeConv(OpContext& c, const std::string& input, const std::string& weights,
                       const std::string& bias, const std::vector<int64_t>& in_shape,
                       const std::vector<int64_t>& w_shape, const std::vector<int64_t>& out_shape,
                       int64_t stride_h, int64_t stride_w, bool same, ActivationFunctionType act) {
  if (in_shape.size() != 4 || w_shape.size() != 4 || out_shape.size() != 4)
    c.Unsupported("a transposed convolution needs rank-4 input, filter and output");
  CheckStrides(c, stride_h, stride_w);
  std::vector<int64_t> begin(2), end(2), extra(2);
  int64_t strides[2] = {stride_h, stride_w};
  for (int k = 0; k < 2; ++k) {
    int64_t total = (in_shape[1 + k] - 1) * strides[k] + w_shape[1 + k] - out_shape[1 + k];
    begin[k] = same && total > 0 ? total / 2 : 0;
    end[k] = total - begin[k];
    if (end[k] < 0) {  // asked for more than the kernel covers: extra rows at the end
      extra[k] = -end[k];
      end[k] = 0;
    }
  }
  // [O,H,W,I] -> [I,O,H,W]
  auto w = c.g().Op("Transpose", {weights}, {IntsAttr("perm", {3, 0, 1, 2})});
  std::vector<std::string> inputs{c.ToNchw(input), w};
  if (!bias.empty()) inputs.push_back(bias);
  std::vector<Attribute> attrs{IntsAttr("strides", {stride_h, stride_w}),
                               IntsAttr("pads", {begin[0], begin[1], end[0], end[1]})};
  if (extra[0] || extra[1]) attrs.push_back(IntsAttr("output_padding", extra));
  auto y = c.g().Op("ConvTranspose", inputs, attrs);
  c.SetOutActivated(0, c.ToNhwc(y), act);
}

void TransposeConv(OpContext& c) {
  const auto* o = Options<::tflite::TransposeConvOptions>(c);
  auto out_shape = c.ConstInts(0);
  std::string bias = c.HasInput(3) ? c.In(3) : "";
  EmitTransposeConv(c, c.In(2), c.In(1), bias, c.InputShape(2), c.InputShape(1), out_shape,
                    o->stride_h(), o->stride_w(), o->padding() == ::tflite::Padding_SAME,
                    o->fused_activation_function());
}

// MediaPipe's Convolution2DTransposeBias: input, OHWI weights, bias. Its custom options do
// not follow one layout across MediaPipe versions, so the stride comes from the shapes the
// file records, with TensorFlow's SAME padding (what MediaPipe's models are built with).
void Convolution2DTransposeBias(OpContext& c) {
  auto in_shape = c.InputShape(0), out_shape = c.OutputShape(0);
  if (in_shape.size() != 4 || out_shape.size() != 4 || in_shape[1] <= 0 || in_shape[2] <= 0 ||
      out_shape[1] % in_shape[1] != 0 || out_shape[2] % in_shape[2] != 0)
    c.Unsupported("the output size is not a whole multiple of the input size");
  EmitTransposeConv(c, c.In(0), c.In(1), c.HasInput(2) ? c.In(2) : "", in_shape, c.InputShape(1),
                    out_shape, out_shape[1] / in_shape[1], out_shape[2] / in_shape[2], true,
                    ActivationFunctionType::ActivationFunctionType_NONE);
}

template <const char* kOp>
void Pool2D(OpContext& c) {
  const auto* o = Options<::tflite::Pool2DOptions>(c);
  CheckStrides(c, o->stride_h(), o->stride_w());
  CheckStrides(c, o->filter_height(), o->filter_width());
  if (Rank(c, 0) != 4) c.Unsupported("pooling needs a rank-4 input");
  auto y = c.g().Op(kOp, {c.ToNchw(c.In(0))},
                    {IntsAttr("kernel_shape", {o->filter_height(), o->filter_width()}),
                     IntsAttr("strides", {o->stride_h(), o->stride_w()}),
                     StringAttr("auto_pad", AutoPad(c, o->padding()))});
  c.SetOutActivated(0, c.ToNhwc(y), o->fused_activation_function());
}
constexpr char kMaxPool[] = "MaxPool", kAveragePool[] = "AveragePool";

void FullyConnected(OpContext& c) {
  const auto* o = Options<::tflite::FullyConnectedOptions>(c);
  if (o->weights_format() != ::tflite::FullyConnectedOptionsWeightsFormat_DEFAULT)
    c.Unsupported("shuffled weights");
  auto w_shape = c.InputShape(1);
  if (w_shape.size() != 2) c.Unsupported("FULLY_CONNECTED needs [outputs, inputs] weights");
  auto& g = c.g();
  auto x = c.In(0), w = c.In(1);
  std::string y;
  if (o->keep_num_dims()) {
    y = g.Op("MatMul", {x, g.Op("Transpose", {w}, {IntsAttr("perm", {1, 0})})});
    if (c.HasInput(2)) y = g.Op("Add", {y, c.In(2)});
  } else {
    // TFLite folds every leading dimension into the batch.
    x = g.Op("Reshape", {x, g.Int64s({-1, w_shape[1]})});
    std::vector<std::string> inputs{x, w};
    if (c.HasInput(2)) inputs.push_back(c.In(2));
    y = g.Op("Gemm", inputs, {IntAttr("transB", 1)});
  }
  c.SetOutActivated(0, y, o->fused_activation_function());
}

void BatchMatMul(OpContext& c) {
  const auto* o = c.op().builtin_options_as_BatchMatMulOptions();
  auto& g = c.g();
  auto adjoint = [&](std::string v, size_t input) {
    int64_t rank = Rank(c, input);
    if (rank < 2) c.Unsupported("BATCH_MATMUL needs rank 2 or more");
    std::vector<int64_t> perm(rank);
    for (int64_t k = 0; k < rank; ++k) perm[k] = k;
    std::swap(perm[rank - 1], perm[rank - 2]);
    return g.Op("Transpose", {v}, {IntsAttr("perm", perm)});
  };
  auto a = c.In(0), b = c.In(1);
  if (o && o->adj_x()) a = adjoint(a, 0);
  if (o && o->adj_y()) b = adjoint(b, 1);
  c.SetOut(0, g.Op("MatMul", {a, b}));
}

// --- reductions ----------------------------------------------------------

template <const char* kOp>
void Reduce(OpContext& c) {
  const auto* o = c.op().builtin_options_as_ReducerOptions();
  auto axes = c.ConstInts(1);
  if (axes.empty()) return c.SetOut(0, c.g().Op("Identity", {c.In(0)}));
  c.SetOut(0, c.g().Op(kOp, {c.In(0)},
                       {IntsAttr("axes", axes), IntAttr("keepdims", o && o->keep_dims() ? 1 : 0)}));
}
constexpr char kReduceMean[] = "ReduceMean", kReduceMax[] = "ReduceMax", kReduceMin[] = "ReduceMin",
               kReduceProd[] = "ReduceProd";

void Sum(OpContext& c) {  // ReduceSum takes its axes as an input since opset 13
  const auto* o = c.op().builtin_options_as_ReducerOptions();
  auto axes = c.ConstInts(1);
  if (axes.empty()) return c.SetOut(0, c.g().Op("Identity", {c.In(0)}));
  c.SetOut(0, c.g().Op("ReduceSum", {c.In(0), c.g().Int64s(axes)},
                       {IntAttr("keepdims", o && o->keep_dims() ? 1 : 0)}));
}

template <const char* kOp>
void ArgReduce(OpContext& c) {
  auto axis = c.ConstInts(1);
  if (axis.size() != 1) c.Unsupported("the axis must be one value");
  auto y = c.g().Op(kOp, {c.In(0)}, {IntAttr("axis", axis[0]), IntAttr("keepdims", 0)});
  c.SetOut(0, c.g().Op("Cast", {y}, {IntAttr("to", c.OnnxType(c.OutputTensor(0)))}));
}
constexpr char kArgMax[] = "ArgMax", kArgMin[] = "ArgMin";

// --- shapes --------------------------------------------------------------

void Reshape(OpContext& c) {
  auto& g = c.g();
  std::string shape;
  if (c.HasInput(1) && c.IsConst(1)) {
    auto dims = c.ConstInts(1);
    shape = g.Int64s(dims);
    bool zero = std::find(dims.begin(), dims.end(), 0) != dims.end();
    return c.SetOut(0, g.Op("Reshape", {c.In(0), shape}, {IntAttr("allowzero", zero ? 1 : 0)}));
  }
  if (c.HasInput(1)) {
    shape = ToInt64(c, c.RawIn(1));
  } else {
    const auto* o = c.op().builtin_options_as_ReshapeOptions();
    if (!o || !o->new_shape()) c.Unsupported("no new shape, neither as input nor as option");
    shape = g.Int64s(std::vector<int64_t>(o->new_shape()->begin(), o->new_shape()->end()));
  }
  c.SetOut(0, g.Op("Reshape", {c.In(0), shape}));
}

void Squeeze(OpContext& c) {
  const auto* o = c.op().builtin_options_as_SqueezeOptions();
  if (!o || !o->squeeze_dims() || o->squeeze_dims()->size() == 0)
    return c.SetOut(0, c.g().Op("Squeeze", {c.In(0)}));
  std::vector<int64_t> axes(o->squeeze_dims()->begin(), o->squeeze_dims()->end());
  c.SetOut(0, c.g().Op("Squeeze", {c.In(0), c.g().Int64s(axes)}));
}

void ExpandDims(OpContext& c) {
  auto axis = c.ConstInts(1);
  if (axis.size() != 1) c.Unsupported("the axis must be one value");
  c.SetOut(0, c.g().Op("Unsqueeze", {c.In(0), c.g().Int64s(axis)}));
}

void Transpose(OpContext& c) {
  c.SetOut(0, c.g().Op("Transpose", {c.In(0)}, {IntsAttr("perm", c.ConstInts(1))}));
}

void Shape(OpContext& c) {
  auto s = c.g().Op("Shape", {c.RawIn(0)});
  c.SetOut(0, c.g().Op("Cast", {s}, {IntAttr("to", c.OnnxType(c.OutputTensor(0)))}));
}

// TFLite's [rank, 2] (before, after) pairs as ONNX's [all befores, all afters].
std::string OnnxPads(OpContext& c, size_t input) {
  auto pairs = c.ConstInts(input);
  if (pairs.size() % 2) c.Unsupported("paddings must be [rank, 2]");
  size_t rank = pairs.size() / 2;
  std::vector<int64_t> pads(2 * rank);
  for (size_t d = 0; d < rank; ++d) {
    pads[d] = pairs[2 * d];
    pads[rank + d] = pairs[2 * d + 1];
  }
  return c.g().Int64s(pads);
}

void Pad(OpContext& c) {
  std::vector<std::string> inputs{c.In(0), OnnxPads(c, 1)};
  if (c.HasInput(2)) inputs.push_back(c.In(2));  // PADV2's constant
  c.SetOut(0, c.g().Op("Pad", inputs));
}

void MirrorPad(OpContext& c) {
  const auto* o = Options<::tflite::MirrorPadOptions>(c);
  if (o->mode() != ::tflite::MirrorPadMode_REFLECT) c.Unsupported("SYMMETRIC mirror padding");
  c.SetOut(0, c.g().Op("Pad", {c.In(0), OnnxPads(c, 1)}, {StringAttr("mode", "reflect")}));
}

void Concatenation(OpContext& c) {
  const auto* o = Options<::tflite::ConcatenationOptions>(c);
  std::vector<std::string> inputs;
  for (size_t i = 0; i < c.input_count(); ++i) inputs.push_back(c.In(i));
  c.SetOutActivated(0, c.g().Op("Concat", inputs, {IntAttr("axis", o->axis())}),
                    o->fused_activation_function());
}

void Pack(OpContext& c) {
  const auto* o = Options<::tflite::PackOptions>(c);
  auto axis = c.g().Int64s({o->axis()});
  std::vector<std::string> parts;
  for (size_t i = 0; i < c.input_count(); ++i)
    parts.push_back(c.g().Op("Unsqueeze", {c.In(i), axis}));
  c.SetOut(0, c.g().Op("Concat", parts, {IntAttr("axis", o->axis())}));
}

void Unpack(OpContext& c) {
  const auto* o = Options<::tflite::UnpackOptions>(c);
  size_t n = c.output_count();
  auto parts = c.g().Node("Split", {c.In(0)}, n, {IntAttr("axis", o->axis())});
  auto axis = c.g().Int64s({o->axis()});
  for (size_t i = 0; i < n; ++i) c.SetOut(i, c.g().Op("Squeeze", {parts[i], axis}));
}

void Split(OpContext& c) {  // inputs: axis, value
  auto axis = c.ConstInts(0);
  if (axis.size() != 1) c.Unsupported("the axis must be one value");
  size_t n = c.output_count();
  auto parts = c.g().Node("Split", {c.In(1)}, n, {IntAttr("axis", axis[0])});
  for (size_t i = 0; i < n; ++i) c.SetOut(i, parts[i]);
}

void SplitV(OpContext& c) {  // inputs: value, size_splits, axis
  auto sizes = c.ConstInts(1);
  auto axis = c.ConstInts(2);
  if (axis.size() != 1) c.Unsupported("the axis must be one value");
  if (std::find(sizes.begin(), sizes.end(), -1) != sizes.end())
    c.Unsupported("a size of -1 in size_splits");
  size_t n = c.output_count();
  auto parts = c.g().Node("Split", {c.In(0), c.g().Int64s(sizes)}, n, {IntAttr("axis", axis[0])});
  for (size_t i = 0; i < n; ++i) c.SetOut(i, parts[i]);
}

void Gather(OpContext& c) {
  const auto* o = c.op().builtin_options_as_GatherOptions();
  if (o && o->batch_dims() != 0) c.Unsupported("batch_dims other than 0");
  c.SetOut(0, c.g().Op("Gather", {c.In(0), c.RawIn(1)}, {IntAttr("axis", o ? o->axis() : 0)}));
}

void Tile(OpContext& c) { c.SetOut(0, c.g().Op("Tile", {c.In(0), ToInt64(c, c.RawIn(1))})); }
void Fill(OpContext& c) { c.SetOut(0, c.g().Op("Expand", {c.In(1), ToInt64(c, c.RawIn(0))})); }
void Range(OpContext& c) { c.SetOut(0, c.g().Op("Range", {c.In(0), c.In(1), c.In(2)})); }

void Slice(OpContext& c) {
  auto begin = c.ConstInts(1), size = c.ConstInts(2);
  if (begin.size() != size.size()) c.Unsupported("begin and size differ in length");
  std::vector<int64_t> end(begin.size());
  for (size_t k = 0; k < begin.size(); ++k)
    end[k] = size[k] < 0 ? std::numeric_limits<int64_t>::max() : begin[k] + size[k];
  c.SetOut(0, c.g().Op("Slice", {c.In(0), c.g().Int64s(begin), c.g().Int64s(end)}));
}

void StridedSlice(OpContext& c) {
  const auto* o = Options<::tflite::StridedSliceOptions>(c);
  if (o->ellipsis_mask() || o->new_axis_mask()) c.Unsupported("ellipsis and new-axis masks");
  auto begin = c.ConstInts(1), end = c.ConstInts(2), strides = c.ConstInts(3);
  size_t n = begin.size();
  if (end.size() != n || strides.size() != n)
    c.Unsupported("begin, end and strides differ in length");
  constexpr int64_t kHigh = std::numeric_limits<int64_t>::max();
  constexpr int64_t kLow = std::numeric_limits<int64_t>::min();
  std::vector<int64_t> shrink;
  for (size_t k = 0; k < n; ++k) {
    if (strides[k] == 0) c.Unsupported("a stride of 0");
    bool up = strides[k] > 0;
    if (o->offset()) end[k] += begin[k];
    if (o->begin_mask() & (1 << k)) begin[k] = up ? 0 : kHigh;
    if (o->end_mask() & (1 << k)) end[k] = up ? kHigh : kLow;
    if (o->shrink_axis_mask() & (1 << k)) {
      end[k] = begin[k] == -1 ? kHigh : begin[k] + 1;
      strides[k] = 1;
      shrink.push_back(static_cast<int64_t>(k));
    }
  }
  std::vector<int64_t> axes(n);
  for (size_t k = 0; k < n; ++k) axes[k] = static_cast<int64_t>(k);
  auto& g = c.g();
  auto y =
      g.Op("Slice", {c.In(0), g.Int64s(begin), g.Int64s(end), g.Int64s(axes), g.Int64s(strides)});
  if (!shrink.empty()) y = g.Op("Squeeze", {y, g.Int64s(shrink)});
  c.SetOut(0, y);
}

// --- resizing and rearranging --------------------------------------------

std::string ResizeSizes(OpContext& c, const std::string& nchw) {
  auto& g = c.g();
  auto batch_channels = g.Op("Slice", {g.Op("Shape", {nchw}), g.Int64s({0}), g.Int64s({2})});
  return g.Op("Concat", {batch_channels, ToInt64(c, c.RawIn(1))}, {IntAttr("axis", 0)});
}

void ResizeBilinear(OpContext& c) {
  const auto* o = c.op().builtin_options_as_ResizeBilinearOptions();
  std::string mode = "asymmetric";
  if (o && o->align_corners())
    mode = "align_corners";
  else if (o && o->half_pixel_centers())
    mode = "half_pixel";
  auto x = c.ToNchw(c.In(0));
  auto y =
      c.g().Op("Resize", {x, "", "", ResizeSizes(c, x)},
               {StringAttr("mode", "linear"), StringAttr("coordinate_transformation_mode", mode)});
  c.SetOut(0, c.ToNhwc(y));
}

void ResizeNearestNeighbor(OpContext& c) {
  const auto* o = c.op().builtin_options_as_ResizeNearestNeighborOptions();
  std::string mode = "asymmetric", nearest = "floor";
  if (o && o->align_corners()) {
    mode = "align_corners";
    nearest = "round_prefer_ceil";
  } else if (o && o->half_pixel_centers()) {
    mode = "tf_half_pixel_for_nn";
  }
  auto x = c.ToNchw(c.In(0));
  auto y =
      c.g().Op("Resize", {x, "", "", ResizeSizes(c, x)},
               {StringAttr("mode", "nearest"), StringAttr("coordinate_transformation_mode", mode),
                StringAttr("nearest_mode", nearest)});
  c.SetOut(0, c.ToNhwc(y));
}

void DepthToSpace(OpContext& c) {
  int64_t block = Options<::tflite::DepthToSpaceOptions>(c)->block_size();
  if (block <= 0) c.Unsupported("block_size must be positive");
  auto y = c.g().Op("DepthToSpace", {c.ToNchw(c.In(0))},
                    {IntAttr("blocksize", block), StringAttr("mode", "DCR")});
  c.SetOut(0, c.ToNhwc(y));
}

void SpaceToDepth(OpContext& c) {
  int64_t block = Options<::tflite::SpaceToDepthOptions>(c)->block_size();
  if (block <= 0) c.Unsupported("block_size must be positive");
  auto y = c.g().Op("SpaceToDepth", {c.ToNchw(c.In(0))}, {IntAttr("blocksize", block)});
  c.SetOut(0, c.ToNhwc(y));
}

// --- control flow ----------------------------------------------------------

// Translates subgraph `index` as the body of an ONNX If branch or Loop, its inputs bound to
// `inputs` (values of the enclosing graph or of the body's own inputs).
onnx::GraphProto Branch(OpContext& c, int64_t index, const std::vector<std::string>& inputs,
                        size_t outputs, const std::string& name) {
  if (index < 0 || static_cast<size_t>(index) >= c.file().subgraph_count())
    c.Unsupported("it names subgraph " + std::to_string(index) + ", which does not exist");
  onnx::GraphProto graph;
  graph.set_name(c.g().Unique(name));
  GraphBuilder b(&graph, c.g().names());
  auto values =
      c.importer().EmitSubgraph(static_cast<size_t>(index), b, inputs, c.scope().depth + 1);
  if (values.size() != outputs)
    c.Unsupported("subgraph " + std::to_string(index) + " has " + std::to_string(values.size()) +
                  " outputs; the operator has " + std::to_string(outputs));
  const auto& sg = c.file().subgraph(static_cast<size_t>(index));
  for (size_t k = 0; k < values.size(); ++k) {
    auto out = b.Op("Identity", {values[k]}, {}, name + "_out");
    b.AddOutput(out, c.OnnxType(*sg.tensors()->Get(sg.outputs()->Get(k))), nullptr);
  }
  return graph;
}

void If(OpContext& c) {
  const auto* o = Options<::tflite::IfOptions>(c);
  std::vector<std::string> inputs;
  for (size_t i = 1; i < c.input_count(); ++i) inputs.push_back(c.RawIn(i));
  size_t n = c.output_count();
  auto then_branch = Branch(c, o->then_subgraph_index(), inputs, n, "then");
  auto else_branch = Branch(c, o->else_subgraph_index(), inputs, n, "else");
  auto outs = c.g().Node("If", {c.RawIn(0)}, n,
                         {GraphAttr("then_branch", std::move(then_branch)),
                          GraphAttr("else_branch", std::move(else_branch))});
  for (size_t i = 0; i < n; ++i) c.SetOut(i, outs[i]);
}

// WHILE(cond, body) on loop variables v: ONNX Loop runs while its condition holds, so the
// condition is computed once before the loop and again at the end of each iteration.
void While(OpContext& c) {
  const auto* o = Options<::tflite::WhileOptions>(c);
  size_t n = c.input_count();
  if (c.output_count() != n) c.Unsupported("WHILE needs as many outputs as inputs");
  int64_t cond_index = o->cond_subgraph_index(), body_index = o->body_subgraph_index();
  for (int64_t index : {cond_index, body_index})
    if (index < 0 || static_cast<size_t>(index) >= c.file().subgraph_count())
      c.Unsupported("it names subgraph " + std::to_string(index) + ", which does not exist");
  auto& g = c.g();
  int depth = c.scope().depth + 1;
  auto scalar = [](GraphBuilder& b, const std::string& v) {
    return b.Op("Reshape", {v, b.Int64s({})});
  };
  std::vector<std::string> initial;
  for (size_t i = 0; i < n; ++i) initial.push_back(c.RawIn(i));
  auto first = c.importer().EmitSubgraph(static_cast<size_t>(cond_index), g, initial, depth);
  if (first.size() != 1) c.Unsupported("the condition subgraph must have one output");

  onnx::GraphProto body;
  body.set_name(g.Unique("while_body"));
  GraphBuilder b(&body, g.names());
  const std::vector<int64_t> no_dims;
  std::string iter = b.Unique("iteration"), cond_in = b.Unique("condition_in");
  b.AddInput(iter, onnx::TensorProto::INT64, &no_dims);
  b.AddInput(cond_in, onnx::TensorProto::BOOL, &no_dims);
  const auto& body_graph = c.file().subgraph(static_cast<size_t>(body_index));
  if (!body_graph.inputs() || body_graph.inputs()->size() != n || !body_graph.outputs() ||
      body_graph.outputs()->size() != n)
    c.Unsupported("the body subgraph must take and give back every loop variable");
  std::vector<std::string> vars;
  for (size_t i = 0; i < n; ++i) {
    vars.push_back(b.Unique("loop_var"));
    b.AddInput(vars.back(), c.OnnxType(*body_graph.tensors()->Get(body_graph.inputs()->Get(i))),
               nullptr);
  }
  auto next = c.importer().EmitSubgraph(static_cast<size_t>(body_index), b, vars, depth);
  auto again = c.importer().EmitSubgraph(static_cast<size_t>(cond_index), b, next, depth);
  if (again.size() != 1) c.Unsupported("the condition subgraph must have one output");
  b.AddOutput(scalar(b, again[0]), onnx::TensorProto::BOOL, &no_dims);
  for (size_t i = 0; i < n; ++i) {
    auto out = b.Op("Identity", {next[i]}, {}, "loop_var_out");
    b.AddOutput(out, c.OnnxType(*body_graph.tensors()->Get(body_graph.outputs()->Get(i))), nullptr);
  }
  std::vector<std::string> inputs{"", scalar(g, first[0])};
  inputs.insert(inputs.end(), initial.begin(), initial.end());
  auto outs = g.Node("Loop", inputs, n, {GraphAttr("body", std::move(body))});
  for (size_t i = 0; i < n; ++i) c.SetOut(i, outs[i]);
}

// --- the tables ------------------------------------------------------------

const std::unordered_map<int32_t, Translator>& Builtins() {
  using B = BuiltinOperator;
  static const std::unordered_map<int32_t, Translator> table = {
      {B::BuiltinOperator_ADD, Arithmetic<kAdd, ::tflite::AddOptions>},
      {B::BuiltinOperator_SUB, Arithmetic<kSub, ::tflite::SubOptions>},
      {B::BuiltinOperator_MUL, Arithmetic<kMul, ::tflite::MulOptions>},
      {B::BuiltinOperator_DIV, Arithmetic<kDiv, ::tflite::DivOptions>},
      {B::BuiltinOperator_MAXIMUM, Binary<kMax>},
      {B::BuiltinOperator_MINIMUM, Binary<kMin>},
      {B::BuiltinOperator_POW, Binary<kPow>},
      {B::BuiltinOperator_GREATER, Binary<kGreater>},
      {B::BuiltinOperator_GREATER_EQUAL, Binary<kGreaterEqual>},
      {B::BuiltinOperator_LESS, Binary<kLess>},
      {B::BuiltinOperator_LESS_EQUAL, Binary<kLessEqual>},
      {B::BuiltinOperator_EQUAL, Binary<kEqual>},
      {B::BuiltinOperator_NOT_EQUAL, NotEqual},
      {B::BuiltinOperator_LOGICAL_AND, Binary<kAnd>},
      {B::BuiltinOperator_LOGICAL_OR, Binary<kOr>},
      {B::BuiltinOperator_LOGICAL_NOT, Unary<kNot>},
      {B::BuiltinOperator_PRELU, Binary<kPRelu>},
      {B::BuiltinOperator_SQUARED_DIFFERENCE, SquaredDifference},
      {B::BuiltinOperator_FLOOR_DIV, FloorDiv},
      {B::BuiltinOperator_FLOOR_MOD, FloorMod},
      {B::BuiltinOperator_ABS, Unary<kAbs>},
      {B::BuiltinOperator_CEIL, Unary<kCeil>},
      {B::BuiltinOperator_COS, Unary<kCos>},
      {B::BuiltinOperator_EXP, Unary<kExp>},
      {B::BuiltinOperator_FLOOR, Unary<kFloor>},
      {B::BuiltinOperator_LOG, Unary<kLog>},
      {B::BuiltinOperator_NEG, Unary<kNeg>},
      {B::BuiltinOperator_ROUND, Unary<kRound>},
      {B::BuiltinOperator_SIN, Unary<kSin>},
      {B::BuiltinOperator_SQRT, Unary<kSqrt>},
      {B::BuiltinOperator_SIGN, Unary<kSign>},
      {B::BuiltinOperator_RSQRT, Rsqrt},
      {B::BuiltinOperator_SQUARE, Square},
      {B::BuiltinOperator_LOGISTIC, Unary<kSigmoid>},
      {B::BuiltinOperator_TANH, Unary<kTanh>},
      {B::BuiltinOperator_RELU, Unary<kRelu>},
      {B::BuiltinOperator_RELU6, Relu6},
      {B::BuiltinOperator_RELU_N1_TO_1, ReluN1To1},
      {B::BuiltinOperator_ELU, Unary<kElu>},
      {B::BuiltinOperator_HARD_SWISH, Unary<kHardSwish>},
      {B::BuiltinOperator_LEAKY_RELU, LeakyRelu},
      {B::BuiltinOperator_GELU, Gelu},
      {B::BuiltinOperator_SOFTMAX, Softmax},
      {B::BuiltinOperator_LOG_SOFTMAX, LogSoftmax},
      {B::BuiltinOperator_L2_NORMALIZATION, L2Normalization},
      {B::BuiltinOperator_SELECT, Select},
      {B::BuiltinOperator_SELECT_V2, Select},
      {B::BuiltinOperator_DEQUANTIZE, Dequantize},
      {B::BuiltinOperator_QUANTIZE, Quantize},
      {B::BuiltinOperator_DENSIFY, Densify},
      {B::BuiltinOperator_CAST, Cast},
      {B::BuiltinOperator_CONV_2D, Conv2D},
      {B::BuiltinOperator_DEPTHWISE_CONV_2D, DepthwiseConv2D},
      {B::BuiltinOperator_TRANSPOSE_CONV, TransposeConv},
      {B::BuiltinOperator_MAX_POOL_2D, Pool2D<kMaxPool>},
      {B::BuiltinOperator_AVERAGE_POOL_2D, Pool2D<kAveragePool>},
      {B::BuiltinOperator_FULLY_CONNECTED, FullyConnected},
      {B::BuiltinOperator_BATCH_MATMUL, BatchMatMul},
      {B::BuiltinOperator_MEAN, Reduce<kReduceMean>},
      {B::BuiltinOperator_REDUCE_MAX, Reduce<kReduceMax>},
      {B::BuiltinOperator_REDUCE_MIN, Reduce<kReduceMin>},
      {B::BuiltinOperator_REDUCE_PROD, Reduce<kReduceProd>},
      {B::BuiltinOperator_SUM, Sum},
      {B::BuiltinOperator_ARG_MAX, ArgReduce<kArgMax>},
      {B::BuiltinOperator_ARG_MIN, ArgReduce<kArgMin>},
      {B::BuiltinOperator_RESHAPE, Reshape},
      {B::BuiltinOperator_SQUEEZE, Squeeze},
      {B::BuiltinOperator_EXPAND_DIMS, ExpandDims},
      {B::BuiltinOperator_TRANSPOSE, Transpose},
      {B::BuiltinOperator_SHAPE, Shape},
      {B::BuiltinOperator_PAD, Pad},
      {B::BuiltinOperator_PADV2, Pad},
      {B::BuiltinOperator_MIRROR_PAD, MirrorPad},
      {B::BuiltinOperator_CONCATENATION, Concatenation},
      {B::BuiltinOperator_PACK, Pack},
      {B::BuiltinOperator_UNPACK, Unpack},
      {B::BuiltinOperator_SPLIT, Split},
      {B::BuiltinOperator_SPLIT_V, SplitV},
      {B::BuiltinOperator_GATHER, Gather},
      {B::BuiltinOperator_TILE, Tile},
      {B::BuiltinOperator_FILL, Fill},
      {B::BuiltinOperator_RANGE, Range},
      {B::BuiltinOperator_SLICE, Slice},
      {B::BuiltinOperator_STRIDED_SLICE, StridedSlice},
      {B::BuiltinOperator_RESIZE_BILINEAR, ResizeBilinear},
      {B::BuiltinOperator_RESIZE_NEAREST_NEIGHBOR, ResizeNearestNeighbor},
      {B::BuiltinOperator_DEPTH_TO_SPACE, DepthToSpace},
      {B::BuiltinOperator_SPACE_TO_DEPTH, SpaceToDepth},
      {B::BuiltinOperator_IF, If},
      {B::BuiltinOperator_WHILE, While},
  };
  return table;
}

}  // namespace

Translator FindBuiltinTranslator(int32_t code) {
  auto it = Builtins().find(code);
  return it == Builtins().end() ? nullptr : it->second;
}

Translator FindCustomTranslator(const std::string& custom_code) {
  if (custom_code == "Convolution2DTransposeBias") return Convolution2DTransposeBias;
  return nullptr;
}

}  // namespace outpost::tflite
