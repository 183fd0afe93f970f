#include "package/package_manifest.h"

#include <algorithm>
#include <regex>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/json_input.h"
#include "core/names.h"
#include "package/tar.h"

namespace outpost {
namespace {

using json = nlohmann::json;

[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "package manifest: " + what);
}

bool IsHex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

bool IsSemanticVersion(std::string_view version) {
  static const std::regex kSemver(
      R"(^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$)");
  return version.size() <= 64 && std::regex_match(version.begin(), version.end(), kSemver);
}

PackageManifest ParsePackageManifest(const json& j, bool require_files) {
  const JsonFields f(j, "package manifest");
  PackageManifest m;
  m.json = j;
  int format = kPackageFormatVersion;
  if (f.Has("format_version")) {
    format = static_cast<int>(f.Integer("format_version", kPackageFormatVersion, 1, 1 << 20));
  } else if (require_files) {
    Bad("missing 'format_version'");
  }
  m.json["format_version"] = format;
  static const std::vector<std::string> kTop = {
      "format_version",    "name",       "version",    "description", "runtime",
      "min_agent_version", "model_file", "files",      "inputs",      "outputs",
      "serving",           "hardware",   "provenance", "monitoring"};
  if (format > kPackageFormatVersion) {
    for (const auto& [k, v] : j.items()) {
      if (std::find(kTop.begin(), kTop.end(), k) == kTop.end()) {
        Bad("format_version " + std::to_string(format) +
            " is newer than this outpost understands (" + std::to_string(kPackageFormatVersion) +
            "): its field '" + k + "' cannot be honoured; upgrade outpost");
      }
    }
    Bad("format_version " + std::to_string(format) + " is newer than this outpost understands (" +
        std::to_string(kPackageFormatVersion) + "); upgrade outpost");
  }
  f.OnlyKeys(kTop);
  m.name = f.Require<std::string>("name");
  if (!IsValidModelName(m.name))
    Bad("name '" + m.name + "' is not a valid model name ([A-Za-z0-9][A-Za-z0-9_.-]*)");
  m.version = f.Require<std::string>("version");
  if (!IsSemanticVersion(m.version))
    Bad("version '" + m.version + "' is not a semantic version (MAJOR.MINOR.PATCH)");
  // "agent": an outpostd build for the agent's own A/B slots; model_file is its executable.
  std::string runtime = f.Get("runtime", "onnx");
  if (runtime != "onnx" && runtime != "tflite" && runtime != "torchscript" && runtime != "agent")
    Bad("runtime must be \"onnx\", \"tflite\", \"torchscript\" or \"agent\"");
  m.json["runtime"] = runtime;
  if (auto v = f.Optional<std::string>("min_agent_version"); v && !IsSemanticVersion(*v))
    Bad("'min_agent_version' must be a semantic version");
  f.Get("description", "");
  m.model_file = f.Get("model_file", runtime == "tflite"        ? "model.tflite"
                                     : runtime == "torchscript" ? "model.pt"
                                                                : "model.onnx");
  if (!IsSafeMemberName(m.model_file)) Bad("'model_file' must be a plain relative file name");
  m.json["model_file"] = m.model_file;
  for (const char* key : {"inputs", "outputs"}) {
    const json* list = f.Find(key);
    if (!list) continue;
    if (!list->is_array()) f.Fail(key, "must be an array");
    size_t i = 0;
    for (const auto& t : *list) {
      const JsonFields tensor(t, "package manifest",
                              std::string(key) + "[" + std::to_string(i++) + "]");
      tensor.OnlyKeys({"name", "datatype", "shape"});
      tensor.Require<std::string>("name");
    }
  }
  f.Object("serving").OnlyKeys({"max_batch_size", "dynamic_batching", "instance_count",
                                "max_queue_size", "timeout_ms", "warmup", "chat_format",
                                "context_length", "max_sequences", "execution_providers",
                                "keep_alive_secs"});
  const JsonFields h = f.Object("hardware");
  h.OnlyKeys({"architectures", "execution_providers", "min_memory_bytes", "cpu_features"});
  for (const char* key : {"architectures", "execution_providers", "cpu_features"})
    h.Get(key, std::vector<std::string>{});
  h.Get("min_memory_bytes", uint64_t{0});
  const JsonFields p = f.Object("provenance");
  p.OnlyKeys(
      {"source_model", "training_data", "metrics", "license", "intended_use", "author", "created"});
  for (const char* key : {"training_data", "license", "intended_use", "author", "created"})
    p.Get(key, "");
  const JsonFields source = p.Object("source_model");
  source.OnlyKeys({"uri", "sha256"});
  source.Get("uri", "");
  if (auto sha = source.Optional<std::string>("sha256"); sha && !IsHex64(*sha))
    source.Fail("sha256", "must be 64 hex digits");
  const JsonFields metrics = p.Object("metrics");
  for (const auto& [k, v] : metrics.json().items()) metrics.Get(k, 0.0);
  if (!require_files) {
    if (f.Has("files")) Bad("'files' is computed by outpost pack; remove it from the template");
    return m;
  }
  const json* files = f.Find("files");
  if (!files || !files->is_array()) f.Fail("files", "must be an array");
  std::string previous;
  bool has_model = false;
  size_t i = 0;
  for (const auto& entry : *files) {
    const JsonFields file(entry, "package manifest", "files[" + std::to_string(i++) + "]");
    file.OnlyKeys({"path", "sha256", "size"});
    PackageFile pf;
    pf.path = file.Require<std::string>("path");
    if (!IsSafeMemberName(pf.path) || pf.path == "manifest.json" || pf.path == "signatures.json") {
      Bad("file path '" + pf.path + "' is not allowed");
    }
    if (pf.path <= previous)
      Bad("'files' must be sorted by path without duplicates ('" + pf.path + "')");
    previous = pf.path;
    pf.sha256 = file.Require<std::string>("sha256");
    if (!IsHex64(pf.sha256)) Bad("sha256 of '" + pf.path + "' must be 64 lowercase hex digits");
    pf.size = file.Require<uint64_t>("size");
    has_model |= pf.path == m.model_file;
    m.files.push_back(std::move(pf));
  }
  if (!has_model) Bad("model_file '" + m.model_file + "' is not among the files");
  return m;
}

PackageManifest ParsePackageManifestText(std::string_view text, bool require_files) {
  return ParsePackageManifest(
      ParseJson(text, JsonLimits::Document(kMaxManifestBytes), "package manifest"), require_files);
}

void CheckAgentVersion(const PackageManifest& m, const std::string& agent_version) {
  if (!m.json.contains("min_agent_version")) return;
  std::string needed = m.json["min_agent_version"].get<std::string>();
  if (CompareVersions(needed, agent_version) > 0) {
    Fail(ErrorCode::kFailedPrecondition, m.name + " " + m.version + " needs outpost " + needed +
                                             " or newer; this agent is " + agent_version);
  }
}

nlohmann::json RepositoryManifest(const PackageManifest& m) {
  json out = {{"name", m.name}, {"model_file", m.model_file}};
  if (std::string runtime = m.json.value("runtime", "onnx");
      runtime != "onnx" && runtime != "agent")
    out["runtime"] = runtime;
  for (const char* key : {"description", "inputs", "outputs", "monitoring"}) {
    if (m.json.contains(key)) out[key] = m.json[key];
  }
  if (m.json.contains("serving")) {
    for (const auto& [k, v] : m.json["serving"].items()) out[k] = v;
  }
  return out;
}

}  // namespace outpost
