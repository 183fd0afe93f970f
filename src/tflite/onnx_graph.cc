#include "tflite/onnx_graph.h"

namespace outpost::tflite {

std::string NameTable::Unique(const std::string& hint) {
  std::string base = hint.empty() ? "v" : hint;
  if (used_.insert(base).second) return base;
  for (size_t i = 1;; ++i) {
    std::string candidate = base + "_" + std::to_string(i);
    if (used_.insert(candidate).second) return candidate;
  }
}

Attribute IntAttr(const std::string& name, int64_t v) {
  Attribute a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INT);
  a.set_i(v);
  return a;
}

Attribute FloatAttr(const std::string& name, float v) {
  Attribute a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::FLOAT);
  a.set_f(v);
  return a;
}

Attribute StringAttr(const std::string& name, const std::string& v) {
  Attribute a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::STRING);
  a.set_s(v);
  return a;
}

Attribute IntsAttr(const std::string& name, const std::vector<int64_t>& v) {
  Attribute a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a.add_ints(x);
  return a;
}

Attribute GraphAttr(const std::string& name, onnx::GraphProto graph) {
  Attribute a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::GRAPH);
  *a.mutable_g() = std::move(graph);
  return a;
}

std::vector<std::string> GraphBuilder::Node(const std::string& op,
                                            const std::vector<std::string>& inputs, size_t outputs,
                                            const std::vector<Attribute>& attrs,
                                            const std::string& hint) {
  std::vector<std::string> names;
  for (size_t i = 0; i < outputs; ++i) names.push_back(Unique(hint.empty() ? op : hint));
  NodeTo(op, inputs, names, attrs);
  return names;
}

void GraphBuilder::NodeTo(const std::string& op, const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs,
                          const std::vector<Attribute>& attrs) {
  auto* node = graph_->add_node();
  node->set_op_type(op);
  node->set_name(outputs.empty() ? Unique(op) : outputs[0] + "/" + op);
  for (const auto& in : inputs) node->add_input(in);
  for (const auto& out : outputs) node->add_output(out);
  for (const auto& a : attrs) *node->add_attribute() = a;
}

std::string GraphBuilder::Initializer(onnx::TensorProto tensor, const std::string& hint) {
  std::string name = Unique(hint);
  tensor.set_name(name);
  *graph_->add_initializer() = std::move(tensor);
  return name;
}

std::string GraphBuilder::Int64s(const std::vector<int64_t>& values, bool scalar) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::INT64);
  if (!scalar) t.add_dims(static_cast<int64_t>(values.size()));
  for (int64_t v : values) t.add_int64_data(v);
  return Initializer(std::move(t), "const_i64");
}

std::string GraphBuilder::Floats(const std::vector<float>& values, bool scalar) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::FLOAT);
  if (!scalar) t.add_dims(static_cast<int64_t>(values.size()));
  for (float v : values) t.add_float_data(v);
  return Initializer(std::move(t), "const_f32");
}

namespace {
void SetType(onnx::ValueInfoProto* info, const std::string& name, int32_t elem_type,
             const std::vector<int64_t>* shape) {
  info->set_name(name);
  auto* tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(elem_type);
  if (!shape) return;
  auto* s = tensor->mutable_shape();
  for (int64_t d : *shape) {
    auto* dim = s->add_dim();
    if (d >= 0) dim->set_dim_value(d);
  }
}
}  // namespace

void GraphBuilder::AddInput(const std::string& name, int32_t elem_type,
                            const std::vector<int64_t>* shape) {
  SetType(graph_->add_input(), name, elem_type, shape);
}

void GraphBuilder::AddOutput(const std::string& name, int32_t elem_type,
                             const std::vector<int64_t>* shape) {
  SetType(graph_->add_output(), name, elem_type, shape);
}

}  // namespace outpost::tflite
