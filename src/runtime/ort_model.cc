#include <fmt/format.h>
#include <onnxruntime_cxx_api.h>
#include <onnxruntime_session_options_config_keys.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/memory_budget.h"
#include "runtime/model.h"
#include "runtime/ort_session.h"

namespace outpost {
namespace {

std::optional<DataType> FromOnnx(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return DataType::kBool;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return DataType::kUint8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
      return DataType::kUint16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
      return DataType::kUint32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
      return DataType::kUint64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return DataType::kInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
      return DataType::kInt16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return DataType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return DataType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return DataType::kFp16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return DataType::kBf16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return DataType::kFp32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return DataType::kFp64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING:
      return DataType::kBytes;
    default:
      return std::nullopt;
  }
}

ONNXTensorElementDataType ToOnnx(DataType t) {
  switch (t) {
    case DataType::kBool:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
    case DataType::kUint8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    case DataType::kUint16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16;
    case DataType::kUint32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32;
    case DataType::kUint64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64;
    case DataType::kInt8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case DataType::kInt16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16;
    case DataType::kInt32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case DataType::kInt64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    case DataType::kFp16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case DataType::kBf16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
    case DataType::kFp32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case DataType::kFp64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
    case DataType::kBytes:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

TensorSpec SpecFromTypeInfo(const std::string& name, const Ort::TypeInfo& info, const char* role) {
  if (info.GetONNXType() != ONNX_TYPE_TENSOR) {
    Fail(ErrorCode::kInvalidArgument,
         std::string(role) + " '" + name +
             "' is not a tensor (sequence, map or optional types cannot be served over KServe v2)");
  }
  auto tensor_info = info.GetTensorTypeAndShapeInfo();
  auto dtype = FromOnnx(tensor_info.GetElementType());
  if (!dtype) {
    Fail(ErrorCode::kInvalidArgument, std::string(role) + " '" + name + "' has element type " +
                                          std::to_string(tensor_info.GetElementType()) +
                                          ", which KServe v2 has no name for");
  }
  TensorSpec spec{name, *dtype, tensor_info.GetShape()};
  for (auto& d : spec.shape) d = d < 0 ? -1 : d;
  return spec;
}

[[noreturn]] void Rethrow(const Ort::Exception& e) {
  auto code = e.GetOrtErrorCode();
  bool caller =
      code == ORT_INVALID_ARGUMENT || code == ORT_INVALID_GRAPH || code == ORT_NOT_IMPLEMENTED;
  Fail(caller ? ErrorCode::kInvalidArgument : ErrorCode::kInternal,
       std::string("onnxruntime: ") + e.what());
}

class OrtModel final : public Model {
 public:
  const std::vector<TensorSpec>& inputs() const override { return inputs_; }
  const std::vector<TensorSpec>& outputs() const override { return outputs_; }
  std::string platform() const override { return platform_; }
  Placement placement() const override { return placement_; }

  OrtModel(const std::filesystem::path& path, const RuntimeOptions& options)
      : arena_(options.memory_arena), platform_("onnxruntime_onnx") {
    // Read, not mapped: a development repository's file rewritten in place (cp over it) would
    // end a mapping's reader with SIGBUS, and the bytes are needed only while the copy is made.
    std::string source;
    if (KeepsOrtFormat(options)) {
      try {
        source = ReadFile(path);
      } catch (const Error&) {
        // ORT says what is wrong with the file.
      }
    }
    const bool derived =
        !source.empty() && LoadDerived(source, path.filename().string(), path.string(), options);
    std::string().swap(source);  // before ORT reads the file itself
    if (!derived) {
      session_ = CreatePlacedSession(
          options, path.string(),
          [&](Ort::SessionOptions& so) { return Ort::Session(OrtEnv(), path.c_str(), so); },
          placement_);
    }
    ReadSignature();
  }
  OrtModel(std::string_view bytes, const std::string& origin, const RuntimeOptions& options,
           std::string platform)
      : arena_(options.memory_arena), platform_(std::move(platform)) {
    std::string name = std::filesystem::path(origin).filename().string() + ".onnx";
    if (!KeepsOrtFormat(options) || !LoadDerived(bytes, name, origin, options)) {
      session_ = CreatePlacedSession(
          options, origin,
          [&](Ort::SessionOptions& so) {
            return Ort::Session(OrtEnv(), bytes.data(), bytes.size(), so);
          },
          placement_);
    }
    ReadSignature();
  }

  std::vector<Tensor> Run(const std::vector<Tensor>& inputs,
                          const std::vector<std::string>& output_names) override {
    try {
      return RunOrThrow(inputs, output_names);
    } catch (const Ort::Exception& e) {
      Rethrow(e);
    }
  }

  bool ArenaGrown() const override { return arena_grown_.load(std::memory_order_relaxed); }
  void ShrinkArena(const std::vector<Tensor>& inputs) override {
    if (!arena_grown_.exchange(false)) return;
    try {
      RunOrThrow(inputs, {}, /*shrink=*/true);
    } catch (const Ort::Exception& e) {
      Rethrow(e);
    }
  }

 private:
  // A model that runs on the CPU is loaded from an ORT-format copy when the options keep one.
  static bool KeepsOrtFormat(const RuntimeOptions& options) {
    const auto& eps = options.execution_providers;
    return !options.ort_format.dir.empty() &&
           (eps.empty() || eps.front() == "CPUExecutionProvider");
  }
  // Loads the ORT-format copy of `source` (deriving it first when there is none); false to
  // load `source` as ONNX instead.
  bool LoadDerived(std::string_view source, const std::string& name, const std::string& origin,
                   const RuntimeOptions& options) {
    derived_ = DerivedOrtModel(options.ort_format, name, source, origin, OnnxRuntimeVersion(),
                               [&](const std::filesystem::path& out) {
                                 Ort::SessionOptions so = BaseSessionOptions(options);
                                 so.SetOptimizedModelFilePath(out.c_str());
                                 so.AddConfigEntry(kOrtSessionOptionsConfigSaveModelFormat, "ORT");
                                 Ort::Session(OrtEnv(), source.data(), source.size(), so);
                               });
    if (!derived_) return false;
    try {
      Ort::SessionOptions so = BaseSessionOptions(options);
      so.AddConfigEntry(kOrtSessionOptionsConfigLoadModelFormat, "ORT");
      so.AddConfigEntry(kOrtSessionOptionsConfigUseORTModelBytesDirectly, "1");
      so.AddConfigEntry(kOrtSessionOptionsConfigUseORTModelBytesForInitializers, "1");
      auto bytes = derived_->bytes();
      session_ = Ort::Session(OrtEnv(), bytes.data(), bytes.size(), so);
    } catch (const Ort::Exception& e) {
      Log(LogSeverity::kWarn, "runtime", "ort_format_refused",
          fmt::format("{}: its ORT-format copy does not load ({}); loading the ONNX model", origin,
                      e.what()),
          {{"model_file", origin}, {"reason", e.what()}});
      derived_.reset();
      return false;
    }
    placement_.provider = "CPUExecutionProvider";
    // Pre-packed weights were copied out of the mapping and the rest is read in place: unmap
    // it all, and a run brings back from the page cache only the pages it reads.
    derived_->DropResidentPages();
    return true;
  }

  void ReadSignature() {
    Ort::AllocatorWithDefaultOptions alloc;
    for (size_t i = 0; i < session_.GetInputCount(); ++i) {
      auto name = session_.GetInputNameAllocated(i, alloc);
      inputs_.push_back(SpecFromTypeInfo(name.get(), session_.GetInputTypeInfo(i), "input"));
    }
    for (size_t i = 0; i < session_.GetOutputCount(); ++i) {
      auto name = session_.GetOutputNameAllocated(i, alloc);
      outputs_.push_back(SpecFromTypeInfo(name.get(), session_.GetOutputTypeInfo(i), "output"));
    }
  }

  std::vector<Tensor> RunOrThrow(const std::vector<Tensor>& inputs,
                                 const std::vector<std::string>& output_names,
                                 bool shrink = false) {
    static const Ort::MemoryInfo cpu =
        Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::AllocatorWithDefaultOptions alloc;
    std::vector<const char*> in_names;
    std::vector<Ort::Value> in_values;
    in_names.reserve(inputs.size());
    in_values.reserve(inputs.size());
    for (const auto& t : inputs) {
      in_names.push_back(t.name.c_str());
      if (t.dtype == DataType::kBytes) {
        auto elements = SplitBytesElements(t.data);
        std::vector<std::string> owned(elements.begin(), elements.end());
        std::vector<const char*> ptrs;
        for (auto& s : owned) ptrs.push_back(s.c_str());
        auto v = Ort::Value::CreateTensor(alloc, t.shape.data(), t.shape.size(),
                                          ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING);
        // FillStringTensor takes C strings: an element with an embedded NUL would be cut short.
        for (size_t i = 0; i < owned.size(); ++i) {
          if (owned[i].find('\0') != std::string::npos) {
            Fail(ErrorCode::kInvalidArgument,
                 "input '" + t.name + "': BYTES element " + std::to_string(i) +
                     " contains a NUL byte, which ONNX string tensors cannot hold");
          }
        }
        v.FillStringTensor(ptrs.data(), ptrs.size());
        in_values.push_back(std::move(v));
      } else {
        // Zero-copy: ORT reads the request's buffer in place and never writes to an input.
        in_values.push_back(Ort::Value::CreateTensor(cpu, const_cast<char*>(t.data.data()),
                                                     t.data.size(), t.shape.data(), t.shape.size(),
                                                     ToOnnx(t.dtype)));
      }
    }
    std::vector<const char*> out_names;
    if (output_names.empty()) {
      for (const auto& o : outputs_) out_names.push_back(o.name.c_str());
    } else {
      for (const auto& o : output_names) out_names.push_back(o.c_str());
    }
    // ORT's arena keeps what the largest run needed for the process's life: runs mark it grown,
    // and ShrinkArena gives the unused part back once large runs stop (the reclaimer) or all
    // requests have (the repository thread).
    uint64_t input_bytes = 0;
    for (const auto& t : inputs) input_bytes += t.data.size();
    Ort::RunOptions run_options{nullptr};
    if (shrink) {
      run_options = Ort::RunOptions{};
      run_options.AddConfigEntry("memory.enable_memory_arena_shrinkage", "cpu:0");
    } else if (arena_) {
      arena_grown_.store(true, std::memory_order_relaxed);
      if (input_bytes >= kLargeRunBytes) NoteLargeRequest();
    }
    auto values = session_.Run(run_options, in_names.data(), in_values.data(), in_values.size(),
                               out_names.data(), out_names.size());
    std::vector<Tensor> result;
    result.reserve(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      auto& v = values[i];
      if (!v.IsTensor())
        Fail(ErrorCode::kInternal, std::string("output '") + out_names[i] + "' is not a tensor");
      auto info = v.GetTensorTypeAndShapeInfo();
      auto dtype = FromOnnx(info.GetElementType());
      if (!dtype)
        Fail(ErrorCode::kInternal,
             std::string("output '") + out_names[i] + "' has an unsupported element type");
      Tensor t{out_names[i], *dtype, info.GetShape(), {}};
      size_t count = info.GetElementCount();
      if (*dtype == DataType::kBytes) {
        for (size_t k = 0; k < count; ++k) {
          size_t len = v.GetStringTensorElementLength(k);
          std::string s(len, '\0');
          if (len) v.GetStringTensorElement(len, k, s.data());
          AppendBytesElement(t.data, s);
        }
      } else {
        size_t bytes = count * ElementSize(*dtype);
        t.data.assign(static_cast<const char*>(v.GetTensorRawData()), bytes);
      }
      v = Ort::Value{nullptr};  // ORT's copy goes as soon as ours exists: never both of all
      result.push_back(std::move(t));
    }
    return result;
  }

  static constexpr uint64_t kLargeRunBytes = 4u << 20;
  bool arena_;
  std::atomic<bool> arena_grown_{false};
  std::string platform_;
  Placement placement_;
  // The ORT-format model the session's initializers point into: outlives the session.
  std::shared_ptr<MappedFile> derived_;
  Ort::Session session_{nullptr};
  std::vector<TensorSpec> inputs_;
  std::vector<TensorSpec> outputs_;
};

}  // namespace

std::unique_ptr<Model> LoadOnnxModel(const std::filesystem::path& path,
                                     const RuntimeOptions& options) {
  try {
    return std::make_unique<OrtModel>(path, options);
  } catch (const Ort::Exception& e) {
    Fail(ErrorCode::kInvalidArgument, "cannot load " + path.string() + ": " + e.what());
  }
}

std::unique_ptr<Model> LoadOnnxModelFromMemory(std::string_view bytes, const std::string& origin,
                                               const RuntimeOptions& options,
                                               const std::string& platform) {
  try {
    return std::make_unique<OrtModel>(bytes, origin, options, platform);
  } catch (const Ort::Exception& e) {
    Fail(ErrorCode::kInvalidArgument, "cannot load " + origin + ": " + e.what());
  }
}

}  // namespace outpost
