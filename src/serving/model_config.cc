#include "serving/model_config.h"

#include <optional>
#include <set>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/json_input.h"
#include "core/names.h"
#include "package/package_manifest.h"

namespace outpost {
namespace {

using json = nlohmann::json;

[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "manifest.json: " + what);
}

// A tensor as a manifest declares it: whatever is left out is taken from the model.
struct DeclaredTensor {
  std::string name;
  std::optional<DataType> dtype;
  std::optional<Shape> shape;
};

std::vector<DeclaredTensor> ParseDeclaredTensors(const json& j, const char* key) {
  std::vector<DeclaredTensor> declared;
  const JsonFields f(j, "manifest.json");
  const json* list = f.Find(key);
  if (!list) return declared;
  if (!list->is_array()) f.Fail(key, "must be an array");
  for (const auto& entry : *list) {
    const JsonFields t(entry, "manifest.json",
                       std::string(key) + "[" + std::to_string(declared.size()) + "]");
    t.OnlyKeys({"name", "datatype", "shape"});
    DeclaredTensor d{t.Require<std::string>("name"), std::nullopt, std::nullopt};
    if (auto dtype = t.Optional<std::string>("datatype")) {
      d.dtype = ParseDataType(*dtype);
      if (!d.dtype) Bad("unknown datatype '" + *dtype + "' for '" + d.name + "'");
    }
    if (t.Has("shape")) {
      d.shape = t.Get<Shape>("shape", {});
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
  const JsonFields f(m.raw, "manifest.json");
  f.OnlyKeys({"name", "version", "runtime", "platform", "description", "model_file", "inputs",
              "outputs", "max_batch_size", "dynamic_batching", "instance_count", "max_queue_size",
              "timeout_ms", "warmup", "keep_alive_secs",
              // chat models
              "chat_format", "context_length", "max_sequences",
              // drift monitoring (monitoring/model_monitor.h)
              "monitoring",
              // ["CUDAExecutionProvider", {"name": ..., "options": {...}}, ...] in preference order
              "execution_providers"});
  if (const json* eps = f.Find("execution_providers")) {
    if (!eps->is_array()) Bad("execution_providers must be an array");
    for (const auto& ep : *eps) {
      std::string name;
      if (ep.is_string()) {
        name = ep.get<std::string>();
      } else if (ep.is_object()) {
        const JsonFields e(
            ep, "manifest.json",
            "execution_providers[" + std::to_string(m.execution_providers.size()) + "]");
        e.OnlyKeys({"name", "options"});
        name = e.Require<std::string>("name");
        if (const json* opts = e.Find("options")) {
          if (!opts->is_object()) Bad("execution provider options must be an object of strings");
          for (const auto& [k, v] : opts->items()) {
            if (!v.is_string()) Bad("execution provider option '" + k + "' must be a string");
            m.provider_options[name][k] = v.get<std::string>();
          }
        }
      } else {
        Bad("execution_providers entries must be names or {\"name\", \"options\"} objects");
      }
      if (name.size() < 18 || !name.ends_with("ExecutionProvider"))
        Bad("execution provider '" + name +
            "' is not a provider name (like CUDAExecutionProvider)");
      m.execution_providers.push_back(name);
    }
  }
  m.runtime = f.Get("runtime", "onnx");
  if (!IsModelRuntime(m.runtime))
    Bad("runtime '" + m.runtime + "' is not supported (onnx, tflite, torchscript)");
  m.model_file = f.Get("model_file", DefaultModelFile(m.runtime));
  std::filesystem::path file(m.model_file);
  if (m.model_file.empty() || file.is_absolute() || file.filename() != file ||
      m.model_file == ".." || m.model_file == ".") {
    Bad("model_file must be a plain file name inside the version directory");
  }
  return m;
}

void ApplyDeclaredTensors(const Manifest& manifest, RuntimeOptions& options) {
  if (!manifest.execution_providers.empty()) {
    // The model's own preference replaces the agent's default list.
    options.execution_providers = manifest.execution_providers;
    options.provider_options = manifest.provider_options;
  }
  if (!manifest.raw.is_object()) {
    if (manifest.runtime == "torchscript")
      Bad("a TorchScript model needs a manifest declaring its inputs and outputs");
    return;
  }
  for (const char* key : {"inputs", "outputs"}) {
    for (const auto& d : ParseDeclaredTensors(manifest.raw, key)) {
      if (manifest.runtime == "tflite" && d.shape && std::string(key) == "inputs")
        options.input_shapes[d.name] = *d.shape;
      if (manifest.runtime != "torchscript") continue;
      if (!d.dtype || !d.shape)
        Bad(std::string(key) + " '" + d.name +
            "': a TorchScript model's tensors need a datatype and a shape");
      (std::string(key) == "inputs" ? options.inputs : options.outputs)
          .push_back({d.name, *d.dtype, *d.shape});
    }
  }
  if (manifest.runtime == "torchscript" && (options.inputs.empty() || options.outputs.empty()))
    Bad("a TorchScript model needs its inputs and outputs declared (name, datatype, shape)");
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
  const JsonFields f(j, "manifest.json");
  if (auto n = f.Get("name", name); n != name)
    Bad("name '" + n + "' differs from the directory '" + name + "'");
  c.description = f.Get("description", "");
  MergeDeclared(c.inputs, ParseDeclaredTensors(j, "inputs"), "input");
  MergeDeclared(c.outputs, ParseDeclaredTensors(j, "outputs"), "output");
  c.max_batch_size = static_cast<int>(f.Integer("max_batch_size", 0, 0, 1 << 20));
  if (f.Has("instance_count"))
    c.instance_count = static_cast<int>(f.Integer("instance_count", 1, 1, 64));
  c.max_queue_size = static_cast<size_t>(f.Integer("max_queue_size", 64, 1, 100000));
  c.timeout = std::chrono::milliseconds(f.Integer("timeout_ms", 0, 0, 24LL * 3600 * 1000));
  c.keep_alive = std::chrono::seconds(f.Integer("keep_alive_secs", 0, 0, 365LL * 24 * 3600));
  if (f.Has("dynamic_batching")) {
    const JsonFields b = f.Object("dynamic_batching");
    b.OnlyKeys({"max_queue_delay_us"});
    c.dynamic_batching = true;
    c.max_queue_delay =
        std::chrono::microseconds(b.Integer("max_queue_delay_us", 500, 0, 10'000'000));
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
      const JsonFields warmup(w, "manifest.json", "warmup");
      warmup.OnlyKeys({"shapes"});
      c.warmup_shapes = warmup.Get<std::map<std::string, Shape>>("shapes", {});
    } else {
      Bad("warmup must be true, false or {\"shapes\": {...}}");
    }
  }
  return c;
}

}  // namespace outpost
