#include "tflite/tflite_importer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "tflite/sparse_tensor.h"
#include "tflite/translation.h"

namespace outpost::tflite {
namespace {

[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "tflite: " + what);
}

// Subgraphs call subgraphs (IF, WHILE); a file whose subgraph calls itself must not recurse
// without end.
constexpr int kMaxSubgraphDepth = 8;

std::string TensorName(const ::tflite::Tensor& t) { return t.name() ? t.name()->str() : ""; }

// A readable, bounded ONNX name from a TFLite tensor name (which can be a long
// ';'-joined list of TensorFlow op names).
std::string NameHint(const ::tflite::Tensor& t) {
  std::string name = TensorName(t);
  if (auto semi = name.find(';'); semi != std::string::npos) name.resize(semi);
  std::string out;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '/' || c == '.' || c == ':' || c == '-';
    out.push_back(ok ? c : '_');
    if (out.size() >= 64) break;
  }
  return out.empty() ? "t" : out;
}

bool IsQuantized(const ::tflite::Tensor& t) {
  const auto* q = t.quantization();
  if (!q || !q->scale() || q->scale()->size() == 0) return false;
  switch (t.type()) {
    case ::tflite::TensorType_INT8:
    case ::tflite::TensorType_UINT8:
    case ::tflite::TensorType_INT16:
    case ::tflite::TensorType_INT32:
      return true;
    default:
      return false;
  }
}

std::vector<int64_t> FileShape(const ::tflite::Tensor& t) {
  std::vector<int64_t> shape;
  if (t.shape())
    for (int32_t d : *t.shape()) shape.push_back(d);
  return shape;
}

// The shape the interpreter would accept: -1 where shape_signature says the size varies.
std::vector<int64_t> SignatureShape(const ::tflite::Tensor& t) {
  if (!t.shape_signature() || t.shape_signature()->size() == 0) return FileShape(t);
  std::vector<int64_t> shape;
  for (int32_t d : *t.shape_signature()) shape.push_back(d < 0 ? -1 : d);
  return shape;
}

}  // namespace

int32_t OnnxElementType(::tflite::TensorType type) {
  using T = ::tflite::TensorType;
  switch (type) {
    case T::TensorType_FLOAT32:
      return onnx::TensorProto::FLOAT;
    case T::TensorType_FLOAT16:
      return onnx::TensorProto::FLOAT16;
    case T::TensorType_FLOAT64:
      return onnx::TensorProto::DOUBLE;
    case T::TensorType_INT32:
      return onnx::TensorProto::INT32;
    case T::TensorType_UINT8:
      return onnx::TensorProto::UINT8;
    case T::TensorType_INT64:
      return onnx::TensorProto::INT64;
    case T::TensorType_BOOL:
      return onnx::TensorProto::BOOL;
    case T::TensorType_INT16:
      return onnx::TensorProto::INT16;
    case T::TensorType_INT8:
      return onnx::TensorProto::INT8;
    case T::TensorType_UINT64:
      return onnx::TensorProto::UINT64;
    case T::TensorType_UINT32:
      return onnx::TensorProto::UINT32;
    case T::TensorType_UINT16:
      return onnx::TensorProto::UINT16;
    default:
      return 0;
  }
}

onnx::TensorProto ConstantTensor(const TfliteFile& file, const ::tflite::Tensor& t) {
  int32_t type = OnnxElementType(t.type());
  size_t element = TfliteElementSize(t.type());
  if (type == 0 || element == 0)
    Bad("constant tensor '" + TensorName(t) + "' has type " + TfliteTypeName(t.type()) +
        ", which the importer does not handle");
  std::vector<int64_t> shape = FileShape(t);
  uint64_t count = 1;
  for (int64_t d : shape) {
    count *= static_cast<uint64_t>(d);
    if (count > (uint64_t{1} << 40)) Bad("constant tensor '" + TensorName(t) + "' is too large");
  }
  auto data = file.TensorData(t);
  onnx::TensorProto out;
  out.set_data_type(type);
  for (int64_t d : shape) out.add_dims(d);
  if (t.sparsity()) {
    // Dense data may be larger than the file, within reason: a hostile file must not make
    // the importer allocate without bound.
    out.set_raw_data(Densify(t, data, shape, element, 64 * file.size() + (1u << 20)));
    return out;
  }
  if (data.size() != count * element)
    Bad("constant tensor '" + TensorName(t) + "' holds " + std::to_string(data.size()) +
        " bytes; its shape and type need " + std::to_string(count * element));
  out.set_raw_data(std::string(reinterpret_cast<const char*>(data.data()), data.size()));
  return out;
}

// --- OpContext --------------------------------------------------------------

const TfliteFile& OpContext::file() const { return importer_.file(); }

std::string OpContext::Where() const {
  return "operator " + std::to_string(index_) + " (" + file().OperatorName(op_) + ") of subgraph " +
         std::to_string(scope_.subgraph);
}

void OpContext::Unsupported(const std::string& why) const { Bad(Where() + ": " + why); }

bool OpContext::HasInput(size_t i) const {
  return i < input_count() && op_.inputs()->Get(static_cast<flatbuffers::uoffset_t>(i)) >= 0;
}

const ::tflite::Tensor& OpContext::InputTensor(size_t i) const {
  if (!HasInput(i)) Unsupported("input " + std::to_string(i) + " is missing");
  const auto& sg = file().subgraph(scope_.subgraph);
  return *sg.tensors()->Get(op_.inputs()->Get(static_cast<flatbuffers::uoffset_t>(i)));
}

const ::tflite::Tensor& OpContext::OutputTensor(size_t i) const {
  if (i >= output_count()) Unsupported("output " + std::to_string(i) + " is missing");
  const auto& sg = file().subgraph(scope_.subgraph);
  return *sg.tensors()->Get(op_.outputs()->Get(static_cast<flatbuffers::uoffset_t>(i)));
}

std::string OpContext::RawIn(size_t i) {
  InputTensor(i);
  return importer_.Value(scope_, op_.inputs()->Get(static_cast<flatbuffers::uoffset_t>(i)));
}

namespace {
// DequantizeLinear/QuantizeLinear's scale and zero point for a quantized tensor.
std::pair<std::string, std::string> QuantParams(OpContext& c, const ::tflite::Tensor& t,
                                                std::vector<Attribute>& attrs) {
  const auto* q = t.quantization();
  size_t n = q->scale()->size();
  if (t.type() == ::tflite::TensorType_INT16)
    c.Unsupported("16-bit quantized tensor '" + TensorName(t) + "' (only 8-bit is translated)");
  if (q->zero_point() && q->zero_point()->size() != n && q->zero_point()->size() != 0)
    c.Unsupported("tensor '" + TensorName(t) + "' has " + std::to_string(q->scale()->size()) +
                  " scales but " + std::to_string(q->zero_point()->size()) + " zero points");
  std::vector<float> scales(q->scale()->begin(), q->scale()->end());
  for (float s : scales)
    if (!(s > 0) || !std::isfinite(s))
      c.Unsupported("tensor '" + TensorName(t) + "' has a scale that is not positive and finite");
  onnx::TensorProto zp;
  zp.set_data_type(c.OnnxType(t));
  if (n > 1) {
    zp.add_dims(static_cast<int64_t>(n));
    auto shape = FileShape(t);
    int64_t axis = q->quantized_dimension();
    if (axis < 0 || axis >= static_cast<int64_t>(shape.size()) ||
        shape[axis] != static_cast<int64_t>(n))
      c.Unsupported("tensor '" + TensorName(t) + "': per-channel scales do not match dimension " +
                    std::to_string(axis));
    attrs.push_back(IntAttr("axis", axis));
  }
  std::string raw;
  for (size_t k = 0; k < n; ++k) {
    int64_t z = q->zero_point() && q->zero_point()->size() ? q->zero_point()->Get(k) : 0;
    switch (t.type()) {
      case ::tflite::TensorType_INT8: {
        if (z < -128 || z > 127) c.Unsupported("zero point out of int8 range");
        raw.push_back(static_cast<char>(static_cast<int8_t>(z)));
        break;
      }
      case ::tflite::TensorType_UINT8: {
        if (z < 0 || z > 255) c.Unsupported("zero point out of uint8 range");
        raw.push_back(static_cast<char>(static_cast<uint8_t>(z)));
        break;
      }
      default: {  // INT32 (biases): the zero point is 0
        if (z != 0) c.Unsupported("a 32-bit quantized tensor with a non-zero zero point");
        int32_t v = 0;
        raw.append(reinterpret_cast<const char*>(&v), 4);
      }
    }
  }
  zp.set_raw_data(raw);
  std::string scale = c.g().Floats(scales, n == 1);
  std::string zero = c.g().Initializer(std::move(zp), "zero_point");
  return {scale, zero};
}
}  // namespace

std::string OpContext::In(size_t i) {
  const auto& t = InputTensor(i);
  if (!IsQuantized(t)) return RawIn(i);
  int32_t index = op_.inputs()->Get(static_cast<flatbuffers::uoffset_t>(i));
  std::string& cached = scope_.float_values[index];
  if (!cached.empty()) return cached;
  std::string raw = RawIn(i);
  std::vector<Attribute> attrs;
  auto [scale, zero] = QuantParams(*this, t, attrs);
  cached = g().Op("DequantizeLinear", {raw, scale, zero}, attrs, NameHint(t) + "_dq");
  return cached;
}

void OpContext::SetOut(size_t i, const std::string& value) {
  const auto& t = OutputTensor(i);
  int32_t index = op_.outputs()->Get(static_cast<flatbuffers::uoffset_t>(i));
  if (!scope_.values[index].empty())
    Unsupported("tensor '" + TensorName(t) + "' is written by two operators");
  if (!IsQuantized(t)) {
    scope_.values[index] = value;
    return;
  }
  std::vector<Attribute> attrs;
  auto [scale, zero] = QuantParams(*this, t, attrs);
  if (t.type() == ::tflite::TensorType_INT32)
    Unsupported("an operator that writes a 32-bit quantized tensor");
  scope_.values[index] = g().Op("QuantizeLinear", {value, scale, zero}, attrs, NameHint(t));
  scope_.float_values[index] = "";
}

void OpContext::SetOutActivated(size_t i, const std::string& value,
                                ::tflite::ActivationFunctionType act) {
  using A = ::tflite::ActivationFunctionType;
  std::string v = value;
  switch (act) {
    case A::ActivationFunctionType_NONE:
      break;
    case A::ActivationFunctionType_RELU:
      v = g().Op("Relu", {v});
      break;
    case A::ActivationFunctionType_RELU_N1_TO_1:
      v = g().Op("Clip", {v, g().Floats({-1}, true), g().Floats({1}, true)});
      break;
    case A::ActivationFunctionType_RELU6:
      v = g().Op("Clip", {v, g().Floats({0}, true), g().Floats({6}, true)});
      break;
    case A::ActivationFunctionType_TANH:
      v = g().Op("Tanh", {v});
      break;
    default:
      Unsupported("fused activation " + std::to_string(static_cast<int>(act)));
  }
  SetOut(i, v);
}

bool OpContext::IsConst(size_t i) const { return HasInput(i) && file().IsConstant(InputTensor(i)); }

std::vector<int64_t> OpContext::ConstInts(size_t i) const {
  const auto& t = InputTensor(i);
  if (!IsConst(i)) Unsupported("input " + std::to_string(i) + " must be a constant");
  onnx::TensorProto p = ConstantTensor(file(), t);
  const std::string& raw = p.raw_data();
  std::vector<int64_t> out;
  switch (t.type()) {
    case ::tflite::TensorType_INT32:
      for (size_t k = 0; k + 4 <= raw.size(); k += 4) {
        int32_t v;
        std::memcpy(&v, raw.data() + k, 4);
        out.push_back(v);
      }
      break;
    case ::tflite::TensorType_INT64:
      for (size_t k = 0; k + 8 <= raw.size(); k += 8) {
        int64_t v;
        std::memcpy(&v, raw.data() + k, 8);
        out.push_back(v);
      }
      break;
    default:
      Unsupported("input " + std::to_string(i) + " must be an int32 or int64 constant");
  }
  return out;
}

std::vector<float> OpContext::ConstFloats(size_t i) const {
  const auto& t = InputTensor(i);
  if (!IsConst(i) || t.type() != ::tflite::TensorType_FLOAT32)
    Unsupported("input " + std::to_string(i) + " must be a float32 constant");
  onnx::TensorProto p = ConstantTensor(file(), t);
  std::vector<float> out(p.raw_data().size() / 4);
  std::memcpy(out.data(), p.raw_data().data(), out.size() * 4);
  return out;
}

std::vector<int64_t> OpContext::InputShape(size_t i) const { return FileShape(InputTensor(i)); }
std::vector<int64_t> OpContext::OutputShape(size_t i) const { return FileShape(OutputTensor(i)); }

int32_t OpContext::OnnxType(const ::tflite::Tensor& t) const {
  int32_t type = OnnxElementType(t.type());
  if (type == 0)
    Unsupported("tensor '" + TensorName(t) + "' has type " + TfliteTypeName(t.type()) +
                ", which the importer does not handle");
  return type;
}

// --- Importer ---------------------------------------------------------------

std::string Importer::Value(Scope& scope, int32_t tensor) {
  std::string& v = scope.values[tensor];
  if (!v.empty()) return v;
  const auto& t = *file_.subgraph(scope.subgraph).tensors()->Get(tensor);
  if (!file_.IsConstant(t))
    Bad("subgraph " + std::to_string(scope.subgraph) + ": tensor '" + TensorName(t) +
        "' is read before any operator writes it");
  v = scope.graph->Initializer(ConstantTensor(file_, t), NameHint(t));
  return v;
}

std::vector<std::string> Importer::EmitSubgraph(size_t index, GraphBuilder& graph,
                                                const std::vector<std::string>& inputs, int depth) {
  if (depth > kMaxSubgraphDepth)
    Bad("subgraphs nest deeper than " + std::to_string(kMaxSubgraphDepth) +
        " (a subgraph that calls itself?)");
  if (index >= file_.subgraph_count()) Bad("no subgraph " + std::to_string(index));
  const auto& sg = file_.subgraph(index);
  size_t tensors = sg.tensors() ? sg.tensors()->size() : 0;
  Scope scope{index, &graph, std::vector<std::string>(tensors), std::vector<std::string>(tensors),
              depth};
  size_t declared = sg.inputs() ? sg.inputs()->size() : 0;
  if (declared != inputs.size())
    Bad("subgraph " + std::to_string(index) + " takes " + std::to_string(declared) +
        " inputs but is given " + std::to_string(inputs.size()));
  for (size_t k = 0; k < declared; ++k) scope.values[sg.inputs()->Get(k)] = inputs[k];
  size_t ops = sg.operators() ? sg.operators()->size() : 0;
  for (size_t o = 0; o < ops; ++o) {
    const auto& op = *sg.operators()->Get(o);
    int32_t code = file_.BuiltinCode(op);
    Translator translate = code == ::tflite::BuiltinOperator_CUSTOM
                               ? FindCustomTranslator(file_.CustomCode(op))
                               : FindBuiltinTranslator(code);
    std::string name = file_.OperatorName(op);
    if (!translate)
      Bad("operator " + name + " (subgraph " + std::to_string(index) + ", operator " +
          std::to_string(o) + ") has no ONNX translation");
    if (std::find(used_operators.begin(), used_operators.end(), name) == used_operators.end())
      used_operators.push_back(name);
    OpContext context(*this, scope, op, o);
    translate(context);
    ++operator_count;
  }
  std::vector<std::string> outputs;
  if (sg.outputs())
    for (int32_t t : *sg.outputs()) outputs.push_back(Value(scope, t));
  return outputs;
}

ImportResult ImportTflite(std::string_view flatbuffer, const ImportOptions& options) {
  TfliteFile file = TfliteFile::Open(flatbuffer);
  NameTable names;
  Importer importer(file, names);
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("outpost-tflite-import");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(17);
  GraphBuilder main(model.mutable_graph(), &names);
  model.mutable_graph()->set_name("tflite");
  const auto& sg = file.subgraph(0);
  const auto* tensors = sg.tensors();
  // Inputs and outputs keep the names the TFLite file gives them: clients use those.
  std::vector<std::string> inputs, outputs;
  std::map<std::string, std::vector<int64_t>> unused = options.input_shapes;
  if (sg.inputs())
    for (int32_t i : *sg.inputs()) {
      const auto& t = *tensors->Get(i);
      std::string name = names.Unique(TensorName(t).empty() ? "input" : TensorName(t));
      int32_t type = OnnxElementType(t.type());
      if (type == 0) Bad("input '" + name + "' has type " + TfliteTypeName(t.type()));
      std::vector<int64_t> shape = SignatureShape(t);
      if (auto it = options.input_shapes.find(name); it != options.input_shapes.end()) {
        if (it->second.size() != shape.size())
          Bad("input '" + name + "' has rank " + std::to_string(shape.size()) +
              "; the shape given for it has rank " + std::to_string(it->second.size()));
        shape = it->second;
        unused.erase(name);
      }
      main.AddInput(name, type, &shape);
      inputs.push_back(name);
    }
  if (!unused.empty()) Bad("the model has no input '" + unused.begin()->first + "'");
  if (sg.outputs())
    for (int32_t o : *sg.outputs())
      outputs.push_back(names.Unique(
          TensorName(*tensors->Get(o)).empty() ? "output" : TensorName(*tensors->Get(o))));
  std::vector<std::string> values = importer.EmitSubgraph(0, main, inputs, 0);
  for (size_t k = 0; k < outputs.size(); ++k) {
    const auto& t = *tensors->Get(sg.outputs()->Get(k));
    main.NodeTo("Identity", {values[k]}, {outputs[k]});
    std::vector<int64_t> shape = SignatureShape(t);
    // A resized input can change every size downstream; keep only the rank then.
    if (!options.input_shapes.empty()) std::fill(shape.begin(), shape.end(), -1);
    if (OnnxElementType(t.type()) == 0)
      Bad("output '" + outputs[k] + "' has type " + TfliteTypeName(t.type()));
    main.AddOutput(outputs[k], OnnxElementType(t.type()), &shape);
  }
  ImportResult result;
  if (!model.SerializeToString(&result.onnx)) Bad("the translated model does not serialize");
  result.operators = importer.used_operators;
  std::sort(result.operators.begin(), result.operators.end());
  result.operator_count = importer.operator_count;
  return result;
}

}  // namespace outpost::tflite
