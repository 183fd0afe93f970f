#include "serving/model_config.h"

#include <optional>
#include <set>

#include "core/error.h"
#include "core/json_input.h"
#include "core/names.h"
#include "package/package_manifest.h"

namespace outpost {
namespace {

using json = nlohmann::json;

[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "manifest.json: " + what);
}

template <typename T>
T Get(const json& j, const char* key, T fallback) {
  if (!j.contains(key)) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    Bad(std::string("field '") + key + "' has the wrong type");
  }
}

// A tensor as a manifest declares it: whatever is left out is taken from the model.
struct DeclaredTensor {
  std::string name;
  std::optional<DataType> dtype;
  std::optional<Shape> shape;
};

std::vector<DeclaredTensor> ParseDeclaredTensors(const json& j, const char* key) {
  std::vector<DeclaredTensor> declared;
  if (!j.contains(key)) return declared;
  if (!j[key].is_array()) Bad(std::string("'") + key + "' must be an array");
  for (const auto& t : j[key]) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string()) {
      Bad(std::string("every entry of '") + key + "' needs a string 'name'");
    }
    for (const auto& [k, v] : t.items()) {
      if (k != "name" && k != "datatype" && k != "shape")
        Bad(std::string("unknown field '") + k + "' in '" + key + "'");
    }
    DeclaredTensor d{t["name"].get<std::string>(), std::nullopt, std::nullopt};
    if (t.contains("datatype")) {
      std::string dtype = Get<std::string>(t, "datatype", "");
      d.dtype = ParseDataType(dtype);
      if (!d.dtype) Bad("unknown datatype '" + dtype + "' for '" + d.name + "'");
    }
    if (t.contains("shape")) {
      d.shape = Get<Shape>(t, "shape", {});
      for (auto dim : *d.shape) {
        if (dim < -1) Bad("bad dimension in shape of '" + d.name + "'");
      }
    }
    declared.push_back(std::move(d));
  }
  return declared;
}

void MergeDeclared(std::vector<TensorSpec>& model, const std::vector<DeclaredTensor>& declared,
                   const char* role) {
  for (const auto& d : declared) {
    auto it = std::find_if(model.begin(), model.end(),
                           [&](const TensorSpec& m) { return m.name == d.name; });
    if (it == model.end())
      Bad(std::string("declares ") + role + " '" + d.name + "' that the model does not have");
    if (d.dtype && *d.dtype != it->dtype) {
      Bad(std::string(role) + " '" + d.name + "' is " + std::string(DataTypeName(*d.dtype)) +
          " in the manifest but " + std::string(DataTypeName(it->dtype)) + " in the model");
    }
    if (!d.shape) continue;
    if (!it->shape.empty() && d.shape->size() != it->shape.size()) {
      Bad(std::string(role) + " '" + d.name + "' has rank " + std::to_string(d.shape->size()) +
          " in the manifest but " + std::to_string(it->shape.size()) + " in the model");
    }
    for (size_t i = 0; i < it->shape.size(); ++i) {
      if (it->shape[i] >= 0 && (*d.shape)[i] != it->shape[i]) {
        Bad(std::string(role) + " '" + d.name + "' shape " + ShapeToString(*d.shape) +
            " contradicts the model's " + ShapeToString(it->shape));
      }
    }
    it->shape = *d.shape;
  }
}

}  // namespace

Manifest ParseManifest(const std::string& text) {
  Manifest m;
  try {
    m.raw = ParseJson(text, JsonLimits::Document(kMaxManifestBytes), "");
  } catch (const Error& e) {
    Bad(e.what());
  }
  if (!m.raw.is_object()) Bad("must be a JSON object");
  static const std::set<std::string> kKnown = {
      "name", "version", "runtime", "platform", "description", "model_file", "inputs", "outputs",
      "max_batch_size", "dynamic_batching", "instance_count", "max_queue_size", "timeout_ms",
      "warmup",
      // chat models
      "chat_format", "context_length", "max_sequences",
      // drift monitoring (monitoring/model_monitor.h)
      "monitoring"};
  for (const auto& [k, v] : m.raw.items()) {
    if (!kKnown.count(k)) Bad("unknown field '" + k + "'");
  }
  std::string runtime = Get<std::string>(m.raw, "runtime", "onnx");
  if (runtime != "onnx") Bad("runtime '" + runtime + "' is not supported (onnx)");
  m.model_file = Get<std::string>(m.raw, "model_file", "model.onnx");
  std::filesystem::path f(m.model_file);
  if (m.model_file.empty() || f.is_absolute() || f.filename() != f || m.model_file == ".." ||
      m.model_file == ".") {
    Bad("model_file must be a plain file name inside the version directory");
  }
  return m;
}

ModelConfig BuildModelConfig(const std::string& name, const std::string& version,
                             const std::filesystem::path& model_path,
                             const std::vector<TensorSpec>& model_inputs,
                             const std::vector<TensorSpec>& model_outputs,
                             const Manifest& manifest) {
  const json& j = manifest.raw;
  ModelConfig c;
  c.name = name;
  c.version = version;
  c.model_path = model_path;
  c.inputs = model_inputs;
  c.outputs = model_outputs;
  if (j.is_null()) return c;
  if (auto n = Get<std::string>(j, "name", name); n != name)
    Bad("name '" + n + "' differs from the directory '" + name + "'");
  c.description = Get<std::string>(j, "description", "");
  MergeDeclared(c.inputs, ParseDeclaredTensors(j, "inputs"), "input");
  MergeDeclared(c.outputs, ParseDeclaredTensors(j, "outputs"), "output");
  c.max_batch_size = Get<int>(j, "max_batch_size", 0);
  if (c.max_batch_size < 0) Bad("max_batch_size must be >= 0");
  c.instance_count = Get<int>(j, "instance_count", 1);
  if (c.instance_count < 1 || c.instance_count > 64) Bad("instance_count must be 1..64");
  int64_t queue = Get<int64_t>(j, "max_queue_size", 64);
  if (queue < 1 || queue > 100000) Bad("max_queue_size must be 1..100000");
  c.max_queue_size = static_cast<size_t>(queue);
  int64_t timeout = Get<int64_t>(j, "timeout_ms", 0);
  if (timeout < 0) Bad("timeout_ms must be >= 0");
  c.timeout = std::chrono::milliseconds(timeout);
  if (j.contains("dynamic_batching")) {
    const auto& b = j["dynamic_batching"];
    if (!b.is_object()) Bad("dynamic_batching must be an object");
    for (const auto& [k, v] : b.items()) {
      if (k != "max_queue_delay_us") Bad("unknown field '" + k + "' in dynamic_batching");
    }
    c.dynamic_batching = true;
    int64_t delay = Get<int64_t>(b, "max_queue_delay_us", 500);
    if (delay < 0 || delay > 10'000'000) Bad("max_queue_delay_us must be 0..10000000");
    c.max_queue_delay = std::chrono::microseconds(delay);
    if (c.max_batch_size == 0) Bad("dynamic_batching needs max_batch_size > 0");
  }
  if (c.max_batch_size > 0) {
    for (const auto* list : {&c.inputs, &c.outputs}) {
      for (const auto& s : *list) {
        if (s.shape.empty() || s.shape[0] != -1) {
          Bad("max_batch_size needs a variable first dimension on every input and output; '" +
              s.name + "' has shape " + ShapeToString(s.shape));
        }
      }
    }
  }
  if (j.contains("warmup")) {
    const auto& w = j["warmup"];
    if (w.is_boolean()) {
      c.warmup = w.get<bool>();
    } else if (w.is_object()) {
      for (const auto& [k, v] : w.items()) {
        if (k != "shapes") Bad("unknown field '" + k + "' in warmup");
      }
      c.warmup_shapes = Get<std::map<std::string, Shape>>(w, "shapes", {});
    } else {
      Bad("warmup must be true, false or {\"shapes\": {...}}");
    }
  }
  return c;
}

}  // namespace outpost
