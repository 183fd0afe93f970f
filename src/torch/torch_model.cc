#include "torch/torch_model.h"

#include <torch/csrc/api/include/torch/version.h>
#include <torch/csrc/jit/mobile/import.h>
#include <torch/csrc/jit/mobile/module.h>
#include <torch/script.h>

#include <mutex>

#include "core/error.h"

namespace outpost {
namespace {

std::optional<c10::ScalarType> ToTorch(DataType t) {
  switch (t) {
    case DataType::kBool:
      return c10::kBool;
    case DataType::kUint8:
      return c10::kByte;
    case DataType::kInt8:
      return c10::kChar;
    case DataType::kInt16:
      return c10::kShort;
    case DataType::kInt32:
      return c10::kInt;
    case DataType::kInt64:
      return c10::kLong;
    case DataType::kFp16:
      return c10::kHalf;
    case DataType::kBf16:
      return c10::kBFloat16;
    case DataType::kFp32:
      return c10::kFloat;
    case DataType::kFp64:
      return c10::kDouble;
    default:
      return std::nullopt;
  }
}

// libtorch's messages carry a C++ backtrace (c10::Error) or a TorchScript traceback (errors
// raised inside the interpreter) around the line that says what went wrong.
std::string Reason(const std::exception& e) {
  std::string msg = e.what();
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) msg = c10->what_without_backtrace();
  if (msg.find("Traceback of TorchScript") != std::string::npos) {
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    msg = msg.substr(msg.rfind('\n') + 1);
  }
  if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  return msg;
}

[[noreturn]] void Rethrow(const std::string& where, const std::exception& e) {
  Fail(ErrorCode::kInvalidArgument, "libtorch: " + where + ": " + Reason(e));
}

class TorchModel final : public Model {
 public:
  TorchModel(const std::filesystem::path& path, const RuntimeOptions& options)
      : inputs_(options.inputs), outputs_(options.outputs) {
    if (inputs_.empty() || outputs_.empty())
      Fail(ErrorCode::kInvalidArgument,
           path.string() +
               ": a TorchScript model needs its inputs and outputs declared in the manifest "
               "(name, datatype, shape), in the order forward() takes and returns them");
    for (const auto* list : {&inputs_, &outputs_})
      for (const auto& t : *list)
        if (!ToTorch(t.dtype))
          Fail(ErrorCode::kInvalidArgument,
               path.string() + ": tensor '" + t.name + "' has a datatype libtorch cannot hold");
    try {
      if (path.extension() == ".ptl") {
        mobile_ = std::make_unique<torch::jit::mobile::Module>(
            torch::jit::_load_for_mobile(path.string()));
      } else {
        module_ = std::make_unique<torch::jit::script::Module>(torch::jit::load(path.string()));
        module_->eval();
      }
    } catch (const std::exception& e) {
      Rethrow("cannot load " + path.string(), e);
    }
  }

  const std::vector<TensorSpec>& inputs() const override { return inputs_; }
  const std::vector<TensorSpec>& outputs() const override { return outputs_; }
  std::string platform() const override { return "pytorch_libtorch"; }
  Placement placement() const override { return {"libtorch CPU", {}}; }

  std::vector<Tensor> Run(const std::vector<Tensor>& inputs,
                          const std::vector<std::string>& output_names) override {
    // forward() takes its inputs by position: put the request's in the declared order.
    std::vector<c10::IValue> args;
    for (const auto& spec : inputs_) {
      auto it = std::find_if(inputs.begin(), inputs.end(),
                             [&](const Tensor& t) { return t.name == spec.name; });
      if (it == inputs.end())
        Fail(ErrorCode::kInvalidArgument, "input '" + spec.name + "' is missing");
      auto type = ToTorch(it->dtype);
      if (!type)
        Fail(ErrorCode::kInvalidArgument, "input '" + spec.name + "': unsupported datatype");
      // The request's buffer is read in place; forward() of a model in eval mode does not
      // write to its arguments, and the buffer is not used again if one does.
      args.emplace_back(torch::from_blob(const_cast<char*>(it->data.data()), it->shape,
                                         torch::TensorOptions().dtype(*type)));
    }
    c10::IValue result;
    try {
      c10::InferenceMode guard;
      if (mobile_) {
        std::lock_guard lock(mobile_mu_);  // the lite interpreter's module is not reentrant
        result = mobile_->forward(args);
      } else {
        result = module_->forward(args);
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      Rethrow("forward", e);
    }
    std::vector<at::Tensor> values;
    if (result.isTensor()) {
      values.push_back(result.toTensor());
    } else if (result.isTuple()) {
      for (const auto& v : result.toTupleRef().elements()) {
        if (!v.isTensor())
          Fail(ErrorCode::kInternal, "forward() returned a tuple with a non-tensor");
        values.push_back(v.toTensor());
      }
    } else if (result.isTensorList()) {
      for (const auto& v : result.toTensorVector()) values.push_back(v);
    } else {
      Fail(ErrorCode::kInternal, "forward() returned " + result.tagKind() + ", not tensors");
    }
    if (values.size() != outputs_.size())
      Fail(ErrorCode::kInternal, "forward() returned " + std::to_string(values.size()) +
                                     " tensors; the manifest declares " +
                                     std::to_string(outputs_.size()));
    std::vector<Tensor> out;
    for (size_t k = 0; k < outputs_.size(); ++k) {
      const auto& spec = outputs_[k];
      if (!output_names.empty() &&
          std::find(output_names.begin(), output_names.end(), spec.name) == output_names.end())
        continue;
      at::Tensor v = values[k].to(torch::kCPU).to(*ToTorch(spec.dtype)).contiguous();
      Tensor t{spec.name, spec.dtype, std::vector<int64_t>(v.sizes().begin(), v.sizes().end()), {}};
      t.data.assign(static_cast<const char*>(v.data_ptr()), v.numel() * v.element_size());
      out.push_back(std::move(t));
    }
    if (!output_names.empty()) {
      // In the order asked for.
      std::vector<Tensor> ordered;
      for (const auto& name : output_names) {
        auto it =
            std::find_if(out.begin(), out.end(), [&](const Tensor& t) { return t.name == name; });
        if (it == out.end()) Fail(ErrorCode::kInvalidArgument, "no output '" + name + "'");
        ordered.push_back(std::move(*it));
      }
      return ordered;
    }
    return out;
  }

 private:
  std::vector<TensorSpec> inputs_;
  std::vector<TensorSpec> outputs_;
  std::unique_ptr<torch::jit::script::Module> module_;
  std::unique_ptr<torch::jit::mobile::Module> mobile_;
  std::mutex mobile_mu_;
};

}  // namespace
}  // namespace outpost

extern "C" {

outpost::Model* outpost_torch_load(const char* path, const outpost::RuntimeOptions* options,
                                   std::string* error) {
  try {
    return new outpost::TorchModel(path, *options);
  } catch (const std::exception& e) {
    *error = e.what();
    return nullptr;
  }
}

const char* outpost_torch_version() {
  static const std::string version = std::to_string(TORCH_VERSION_MAJOR) + "." +
                                     std::to_string(TORCH_VERSION_MINOR) + "." +
                                     std::to_string(TORCH_VERSION_PATCH);
  return version.c_str();
}

}  // extern "C"
