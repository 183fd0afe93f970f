// Builds an ONNX graph node by node for the TensorFlow Lite importer. Names are unique across
// the whole model (ONNX forbids a subgraph to reuse a name of the graph around it), so every
// builder of one model shares one NameTable.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace outpost::tflite {

class NameTable {
 public:
  // `hint` if it is free, else `hint` with the first free numeric suffix.
  std::string Unique(const std::string& hint);

 private:
  std::set<std::string> used_;
};

// One attribute of a node, built with the helpers below.
using Attribute = onnx::AttributeProto;
Attribute IntAttr(const std::string& name, int64_t v);
Attribute FloatAttr(const std::string& name, float v);
Attribute StringAttr(const std::string& name, const std::string& v);
Attribute IntsAttr(const std::string& name, const std::vector<int64_t>& v);
Attribute GraphAttr(const std::string& name, onnx::GraphProto graph);

class GraphBuilder {
 public:
  GraphBuilder(onnx::GraphProto* graph, NameTable* names) : graph_(graph), names_(names) {}

  // Adds a node with `outputs` fresh outputs named after `hint`; returns their names.
  std::vector<std::string> Node(const std::string& op, const std::vector<std::string>& inputs,
                                size_t outputs, const std::vector<Attribute>& attrs = {},
                                const std::string& hint = "");
  // A node with one output.
  std::string Op(const std::string& op, const std::vector<std::string>& inputs,
                 const std::vector<Attribute>& attrs = {}, const std::string& hint = "") {
    return Node(op, inputs, 1, attrs, hint)[0];
  }
  // A node whose outputs have the given names (already unique).
  void NodeTo(const std::string& op, const std::vector<std::string>& inputs,
              const std::vector<std::string>& outputs, const std::vector<Attribute>& attrs = {});

  // Constant tensors, stored as initializers of this graph.
  std::string Initializer(onnx::TensorProto tensor, const std::string& hint);
  std::string Int64s(const std::vector<int64_t>& values, bool scalar = false);
  std::string Floats(const std::vector<float>& values, bool scalar = false);

  void AddInput(const std::string& name, int32_t elem_type, const std::vector<int64_t>* shape);
  void AddOutput(const std::string& name, int32_t elem_type, const std::vector<int64_t>* shape);

  std::string Unique(const std::string& hint) { return names_->Unique(hint); }
  NameTable* names() { return names_; }

 private:
  onnx::GraphProto* graph_;
  NameTable* names_;
};

}  // namespace outpost::tflite
