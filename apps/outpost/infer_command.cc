#include "infer_command.h"
#include "agent_client.h"

#include <httplib.h>

#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "npy.h"
#include "serving/http_codec.h"

namespace outpost {
namespace {

using json = nlohmann::json;

struct InferOptions {
  std::string model, version, url = "http://127.0.0.1:8000", output_dir;
  std::vector<std::string> inputs, outputs;
  bool as_json = false;
};
InferOptions& Opts() {
  static InferOptions o;
  return o;
}

// A JSON input file: a tensor object {"datatype", "shape", "data"}, or a bare (nested) array
// whose datatype comes from the model's metadata and whose shape is its nesting.
json JsonInput(const std::string& name, const std::string& path, const json& metadata) {
  auto j = json::parse(ReadFile(path), nullptr, false);
  if (j.is_discarded()) Fail(ErrorCode::kInvalidArgument, path + ": not valid JSON");
  if (j.is_object()) {
    j["name"] = name;
    return j;
  }
  std::string datatype;
  for (const auto& in : metadata.value("inputs", json::array())) {
    if (in.value("name", "") == name) datatype = in.value("datatype", "");
  }
  if (datatype.empty())
    Fail(ErrorCode::kInvalidArgument, "model '" + Opts().model + "' has no input '" + name + "'");
  std::vector<int64_t> shape;
  for (const json* level = &j; level->is_array(); level = level->empty() ? nullptr : &(*level)[0]) {
    shape.push_back(static_cast<int64_t>(level->size()));
    if (level->empty()) break;
  }
  return {{"name", name}, {"datatype", datatype}, {"shape", shape}, {"data", j}};
}

void PrintOutputs(const InferResponse& response, const InferRequest& request) {
  auto& o = Opts();
  if (!o.output_dir.empty()) {
    std::filesystem::create_directories(o.output_dir);
    for (const auto& t : response.outputs) {
      auto path = std::filesystem::path(o.output_dir) / (t.name + ".npy");
      WriteFileAtomically(path, WriteNpy(t));
      std::cerr << "wrote " << path.string() << "\n";
    }
  }
  InferRequest as_json = request;
  as_json.binary_outputs = false;
  as_json.outputs.clear();
  std::string body = EncodeHttpInferResponse(response, as_json).body;
  if (o.as_json) {
    std::cout << body << "\n";
    return;
  }
  json parsed = json::parse(body);
  std::cout << response.model_name << " version " << response.model_version << "\n";
  for (const auto& out : parsed["outputs"]) {
    std::string values;
    size_t n = 0;
    for (const auto& v : out["data"]) {
      if (n++ == 8) {
        values += " ...";
        break;
      }
      values += (values.empty() ? "" : " ") + v.dump();
    }
    std::cout << "  " << out["name"].get<std::string>() << " " << out["datatype"].get<std::string>()
              << " " << out["shape"].dump() << "  " << values << "\n";
  }
}

}  // namespace

void AddInferCommand(CLI::App& app) {
  auto& o = Opts();
  auto* infer = app.add_subcommand("infer", "Run one inference on a running agent");
  infer->add_option("model", o.model, "Model name")->required();
  infer->add_option("--version", o.version, "Model version (default: the latest)");
  infer->add_option("-i,--input", o.inputs, "NAME=FILE.npy or NAME=FILE.json (repeatable)")
      ->required();
  infer->add_option("-o,--output", o.outputs, "Outputs to return (default: all)");
  infer->add_option("--output-dir", o.output_dir, "Also write each output to DIR/NAME.npy");
  infer->add_option("--url", o.url, "Agent URL")->capture_default_str();
  infer->add_flag("--json", o.as_json, "Print the response as KServe v2 JSON");
}

int RunInferCommand(CLI::App& app) {
  if (!app.got_subcommand("infer")) return -1;
  auto& o = Opts();
  httplib::Client client = AgentClient(o.url);
  client.set_connection_timeout(3);
  client.set_read_timeout(300);
  std::string base = "/v2/models/" + o.model + (o.version.empty() ? "" : "/versions/" + o.version);
  auto meta = client.Get(base);
  if (!meta) {
    std::cerr << "outpost: cannot reach the agent at " << o.url << ": "
              << httplib::to_string(meta.error()) << "\n";
    return 3;
  }
  json metadata = json::parse(meta->body, nullptr, false);
  if (meta->status != 200)
    Fail(ErrorCode::kNotFound,
         metadata.is_object() ? metadata.value("error", meta->body) : meta->body);

  json header = {{"inputs", json::array()}, {"parameters", {{"binary_data_output", true}}}};
  std::string blobs;
  for (const auto& spec : o.inputs) {
    auto eq = spec.find('=');
    if (eq == std::string::npos)
      Fail(ErrorCode::kInvalidArgument, "--input wants NAME=FILE, got '" + spec + "'");
    std::string name = spec.substr(0, eq), path = spec.substr(eq + 1);
    if (path.size() > 4 && path.substr(path.size() - 4) == ".npy") {
      Tensor t = ReadNpy(ReadFile(path), path);
      header["inputs"].push_back({{"name", name},
                                  {"datatype", DataTypeName(t.dtype)},
                                  {"shape", t.shape},
                                  {"parameters", {{"binary_data_size", t.data.size()}}}});
      blobs += t.data;
    } else {
      header["inputs"].push_back(JsonInput(name, path, metadata));
    }
  }
  for (const auto& name : o.outputs)
    header["outputs"].push_back({{"name", name}, {"parameters", {{"binary_data", true}}}});
  std::string head = header.dump();
  httplib::Headers headers = {{"Inference-Header-Content-Length", std::to_string(head.size())}};
  auto res = client.Post(base + "/infer", headers, head + blobs, "application/octet-stream");
  if (!res) {
    std::cerr << "outpost: cannot reach the agent at " << o.url << ": "
              << httplib::to_string(res.error()) << "\n";
    return 3;
  }
  if (res->status != 200) {
    auto err = json::parse(res->body, nullptr, false);
    std::cerr << "outpost: the agent answered " << res->status << ": "
              << (err.is_object() ? err.value("error", res->body) : res->body) << "\n";
    return 1;
  }
  std::optional<size_t> hl;
  if (res->has_header("Inference-Header-Content-Length"))
    hl = ParseHeaderLength(res->get_header_value("Inference-Header-Content-Length"));
  // The response has the same shape as a request with binary data: decode it with the same code.
  json meta_out = json::parse(res->body.substr(0, hl.value_or(res->body.size())));
  InferResponse response{
      meta_out.value("model_name", ""), meta_out.value("model_version", ""), "", {}};
  size_t pos = hl.value_or(res->body.size());
  for (const auto& out : meta_out["outputs"]) {
    Tensor t{out["name"],
             *ParseDataType(out["datatype"].get<std::string>()),
             out["shape"].get<Shape>(),
             {}};
    size_t size = out["parameters"]["binary_data_size"].get<size_t>();
    if (size > res->body.size() - pos)
      Fail(ErrorCode::kInternal, "the agent's response is truncated");
    t.data = res->body.substr(pos, size);
    pos += size;
    response.outputs.push_back(std::move(t));
  }
  InferRequest request;
  PrintOutputs(response, request);
  return 0;
}

}  // namespace outpost
