#include "package/package_manifest.h"

#include <regex>
#include <set>

#include "core/error.h"
#include "core/json_input.h"
#include "core/names.h"
#include "package/tar.h"

namespace outpost {
namespace {

using json = nlohmann::json;

[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "package manifest: " + what);
}

const json& Require(const json& j, const char* key, json::value_t type, const char* type_name) {
  auto it = j.find(key);
  if (it == j.end()) Bad(std::string("missing '") + key + "'");
  bool ok = it->type() == type ||
            (type == json::value_t::number_unsigned && it->is_number_unsigned()) ||
            (type == json::value_t::number_integer && it->is_number_integer());
  if (!ok) Bad(std::string("'") + key + "' must be " + type_name);
  return *it;
}

void OnlyKeys(const json& j, const std::set<std::string>& allowed, const std::string& where) {
  for (const auto& [k, v] : j.items()) {
    if (!allowed.count(k))
      Bad("unknown field '" + k + "'" + (where.empty() ? "" : " in '" + where + "'"));
  }
}

void CheckStringFields(const json& j, const std::set<std::string>& keys, const std::string& where) {
  for (const auto& k : keys) {
    if (j.contains(k) && !j[k].is_string()) Bad("'" + where + "." + k + "' must be a string");
  }
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
  if (!j.is_object()) Bad("must be a JSON object");
  PackageManifest m;
  m.json = j;
  int format = kPackageFormatVersion;
  if (j.contains("format_version")) {
    if (!j["format_version"].is_number_integer()) Bad("'format_version' must be an integer");
    format = j["format_version"].get<int>();
  } else if (require_files) {
    Bad("missing 'format_version'");
  }
  m.json["format_version"] = format;
  static const std::set<std::string> kTop = {
      "format_version",    "name",       "version",    "description", "runtime",
      "min_agent_version", "model_file", "files",      "inputs",      "outputs",
      "serving",           "hardware",   "provenance", "monitoring"};
  if (format > kPackageFormatVersion) {
    for (const auto& [k, v] : j.items()) {
      if (!kTop.count(k)) {
        Bad("format_version " + std::to_string(format) +
            " is newer than this outpost understands (" + std::to_string(kPackageFormatVersion) +
            "): its field '" + k + "' cannot be honoured; upgrade outpost");
      }
    }
    Bad("format_version " + std::to_string(format) + " is newer than this outpost understands (" +
        std::to_string(kPackageFormatVersion) + "); upgrade outpost");
  }
  if (format < 1) Bad("format_version must be >= 1");
  OnlyKeys(j, kTop, "");
  m.name = Require(j, "name", json::value_t::string, "a string").get<std::string>();
  if (!IsValidModelName(m.name))
    Bad("name '" + m.name + "' is not a valid model name ([A-Za-z0-9][A-Za-z0-9_.-]*)");
  m.version = Require(j, "version", json::value_t::string, "a string").get<std::string>();
  if (!IsSemanticVersion(m.version))
    Bad("version '" + m.version + "' is not a semantic version (MAJOR.MINOR.PATCH)");
  // "agent": an outpostd build for the agent's own A/B slots; model_file is its executable.
  if (!j.value("runtime", json("onnx")).is_string()) Bad("runtime must be \"onnx\" or \"agent\"");
  std::string runtime = j.value("runtime", "onnx");
  if (runtime != "onnx" && runtime != "agent") Bad("runtime must be \"onnx\" or \"agent\"");
  m.json["runtime"] = runtime;
  if (j.contains("min_agent_version")) {
    if (!j["min_agent_version"].is_string() ||
        !IsSemanticVersion(j["min_agent_version"].get<std::string>())) {
      Bad("'min_agent_version' must be a semantic version");
    }
  }
  CheckStringFields(j, {"description"}, "");
  m.model_file = j.value("model_file", json("model.onnx")).is_string()
                     ? j.value("model_file", "model.onnx")
                     : "";
  if (!IsSafeMemberName(m.model_file)) Bad("'model_file' must be a plain relative file name");
  m.json["model_file"] = m.model_file;
  for (const char* key : {"inputs", "outputs"}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_array()) Bad(std::string("'") + key + "' must be an array");
    for (const auto& t : j[key]) {
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string())
        Bad(std::string("every entry of '") + key + "' needs a 'name'");
      OnlyKeys(t, {"name", "datatype", "shape"}, key);
    }
  }
  if (j.contains("serving")) {
    if (!j["serving"].is_object()) Bad("'serving' must be an object");
    OnlyKeys(j["serving"],
             {"max_batch_size", "dynamic_batching", "instance_count", "max_queue_size",
              "timeout_ms", "warmup", "chat_format", "context_length", "max_sequences"},
             "serving");
  }
  if (j.contains("hardware")) {
    const auto& h = j["hardware"];
    if (!h.is_object()) Bad("'hardware' must be an object");
    OnlyKeys(h, {"architectures", "execution_providers", "min_memory_bytes", "cpu_features"},
             "hardware");
    for (const char* key : {"architectures", "execution_providers", "cpu_features"}) {
      if (h.contains(key) &&
          (!h[key].is_array() || !std::all_of(h[key].begin(), h[key].end(),
                                              [](const json& v) { return v.is_string(); }))) {
        Bad(std::string("'hardware.") + key + "' must be an array of strings");
      }
    }
    if (h.contains("min_memory_bytes") && !h["min_memory_bytes"].is_number_unsigned())
      Bad("'hardware.min_memory_bytes' must be a number");
  }
  if (j.contains("provenance")) {
    const auto& p = j["provenance"];
    if (!p.is_object()) Bad("'provenance' must be an object");
    OnlyKeys(p,
             {"source_model", "training_data", "metrics", "license", "intended_use", "author",
              "created"},
             "provenance");
    CheckStringFields(p, {"training_data", "license", "intended_use", "author", "created"},
                      "provenance");
    if (p.contains("source_model")) {
      const auto& s = p["source_model"];
      if (!s.is_object()) Bad("'provenance.source_model' must be an object");
      OnlyKeys(s, {"uri", "sha256"}, "provenance.source_model");
      CheckStringFields(s, {"uri", "sha256"}, "provenance.source_model");
      if (s.contains("sha256") && !IsHex64(s["sha256"].get<std::string>()))
        Bad("'provenance.source_model.sha256' must be 64 hex digits");
    }
    if (p.contains("metrics")) {
      if (!p["metrics"].is_object()) Bad("'provenance.metrics' must be an object of numbers");
      for (const auto& [k, v] : p["metrics"].items()) {
        if (!v.is_number()) Bad("'provenance.metrics." + k + "' must be a number");
      }
    }
  }
  if (!require_files) {
    if (j.contains("files"))
      Bad("'files' is computed by outpost pack; remove it from the template");
    return m;
  }
  const auto& files = Require(j, "files", json::value_t::array, "an array");
  std::string previous;
  bool has_model = false;
  for (const auto& f : files) {
    if (!f.is_object()) Bad("every entry of 'files' must be an object");
    OnlyKeys(f, {"path", "sha256", "size"}, "files");
    PackageFile pf;
    pf.path = Require(f, "path", json::value_t::string, "a string").get<std::string>();
    if (!IsSafeMemberName(pf.path) || pf.path == "manifest.json" || pf.path == "signatures.json") {
      Bad("file path '" + pf.path + "' is not allowed");
    }
    if (pf.path <= previous)
      Bad("'files' must be sorted by path without duplicates ('" + pf.path + "')");
    previous = pf.path;
    pf.sha256 = Require(f, "sha256", json::value_t::string, "a string").get<std::string>();
    if (!IsHex64(pf.sha256)) Bad("sha256 of '" + pf.path + "' must be 64 lowercase hex digits");
    pf.size = Require(f, "size", json::value_t::number_unsigned, "a non-negative integer")
                  .get<uint64_t>();
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
  for (const char* key : {"description", "inputs", "outputs", "monitoring"}) {
    if (m.json.contains(key)) out[key] = m.json[key];
  }
  if (m.json.contains("serving")) {
    for (const auto& [k, v] : m.json["serving"].items()) out[k] = v;
  }
  return out;
}

}  // namespace outpost
