#include "serving/inference_service.h"

#include "core/error.h"

namespace outpost {
namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string_view FailureReason(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_request";
    case ErrorCode::kResourceExhausted:
      return "queue_full";
    case ErrorCode::kDeadlineExceeded:
      return "timeout";
    case ErrorCode::kUnavailable:
      return "unavailable";
    default:
      return "internal";
  }
}

// Fills the data of inputs sent by shared-memory region, after checking the size the shape
// and datatype call for against what the region reference says.
void ReadInputRegions(InferRequest& request, const SharedMemoryRegistry& regions,
                      BudgetHold* hold) {
  for (size_t i = 0; i < request.input_regions.size() && i < request.inputs.size(); ++i) {
    const auto& ref = request.input_regions[i];
    if (!ref) continue;
    Tensor& t = request.inputs[i];
    const std::string where = "input '" + t.name + "'";
    if (t.dtype != DataType::kBytes) {
      const uint64_t expected = ElementCount(t.shape) * ElementSize(t.dtype);
      if (expected != ref->byte_size) {
        Fail(ErrorCode::kInvalidArgument,
             where + ": shape " + ShapeToString(t.shape) + " of " +
                 std::string(DataTypeName(t.dtype)) + " takes " + std::to_string(expected) +
                 " bytes, shared_memory_byte_size is " + std::to_string(ref->byte_size));
      }
    }
    if (hold) hold->Add(ref->byte_size, "reading shared memory");
    regions.Read(*ref, request.caller, where, t.data);
  }
}

void WriteOutputRegions(const InferResponse& response, const InferRequest& request,
                        const SharedMemoryRegistry& regions) {
  for (const auto& ro : request.outputs) {
    if (!ro.shared_memory) continue;
    for (const auto& t : response.outputs)
      if (t.name == ro.name)
        regions.Write(*ro.shared_memory, request.caller, "output '" + t.name + "'", t.data);
  }
}

}  // namespace

void ValidateRequest(const InferRequest& request, const ModelConfig& config) {
  const std::string model = "model '" + config.name + "'";
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const Tensor& t = request.inputs[i];
    for (size_t k = 0; k < i; ++k) {
      if (request.inputs[k].name == t.name)
        Fail(ErrorCode::kInvalidArgument, "input '" + t.name + "' is given twice");
    }
    auto spec = std::find_if(config.inputs.begin(), config.inputs.end(),
                             [&](const TensorSpec& s) { return s.name == t.name; });
    if (spec == config.inputs.end())
      Fail(ErrorCode::kInvalidArgument, model + " has no input '" + t.name + "'");
    if (spec->dtype != t.dtype) {
      Fail(ErrorCode::kInvalidArgument,
           "input '" + t.name + "': datatype " + std::string(DataTypeName(t.dtype)) +
               " does not match the model's " + std::string(DataTypeName(spec->dtype)));
    }
    // An empty declared shape may mean "rank unknown": the runtime checks those itself.
    if (!spec->shape.empty() && !ShapeMatches(spec->shape, t.shape)) {
      Fail(ErrorCode::kInvalidArgument, "input '" + t.name + "': shape " + ShapeToString(t.shape) +
                                            " does not match the model's " +
                                            ShapeToString(spec->shape));
    }
    if (config.max_batch_size > 0 &&
        (t.shape.empty() || t.shape[0] < 1 || t.shape[0] > config.max_batch_size)) {
      Fail(ErrorCode::kInvalidArgument, "input '" + t.name + "': batch dimension must be 1.." +
                                            std::to_string(config.max_batch_size) + ", got shape " +
                                            ShapeToString(t.shape));
    }
    ValidateTensorData(t, "input");
  }
  for (const auto& spec : config.inputs) {
    bool given = std::any_of(request.inputs.begin(), request.inputs.end(),
                             [&](const Tensor& t) { return t.name == spec.name; });
    if (!given) Fail(ErrorCode::kInvalidArgument, model + " needs input '" + spec.name + "'");
  }
  if (config.max_batch_size > 0) {
    for (const auto& t : request.inputs) {
      if (t.shape[0] != request.inputs[0].shape[0]) {
        Fail(ErrorCode::kInvalidArgument, "inputs disagree on the batch dimension");
      }
    }
  }
  for (size_t i = 0; i < request.outputs.size(); ++i) {
    const auto& o = request.outputs[i];
    bool known = std::any_of(config.outputs.begin(), config.outputs.end(),
                             [&](const TensorSpec& s) { return s.name == o.name; });
    if (!known) Fail(ErrorCode::kInvalidArgument, model + " has no output '" + o.name + "'");
    for (size_t k = 0; k < i; ++k) {
      if (request.outputs[k].name == o.name)
        Fail(ErrorCode::kInvalidArgument, "output '" + o.name + "' is requested twice");
    }
  }
}

InferResponse InferenceService::Infer(InferRequest request,
                                      std::optional<Clock::time_point> deadline, BudgetHold* hold) {
  const auto start = Clock::now();
  if (shed_reason_) {
    if (std::string why = shed_reason_(); !why.empty())
      Fail(ErrorCode::kUnavailable, "shedding load: " + why);
  }
  auto served = models_.Get(request.model_name, request.model_version);
  if (!served->scheduler)
    Fail(ErrorCode::kInvalidArgument,
         "model '" + served->config.name + "' is a chat model: use POST /v1/chat/completions");
  const auto& metrics = served->metrics;
  try {
    ReadInputRegions(request, shared_memory_, hold);
    ValidateRequest(request, served->config);
    auto timeout = served->config.timeout.count() > 0
                       ? std::chrono::duration_cast<Clock::duration>(served->config.timeout)
                       : std::chrono::duration_cast<Clock::duration>(limits_.default_timeout);
    if (request.timeout && request.timeout->count() > 0) {
      timeout = std::min(timeout, std::chrono::duration_cast<Clock::duration>(*request.timeout));
    }
    auto until = start + timeout;
    if (deadline) until = std::min(until, *deadline);
    std::vector<std::string> outputs;
    for (const auto& o : request.outputs) outputs.push_back(o.name);
    const bool writes_regions =
        std::any_of(request.outputs.begin(), request.outputs.end(),
                    [](const RequestedOutput& o) { return o.shared_memory.has_value(); });
    // Inputs go in the model's declared order, which also makes batching keys line up.
    std::vector<Tensor> inputs;
    inputs.reserve(request.inputs.size());
    for (const auto& spec : served->config.inputs) {
      for (auto& t : request.inputs) {
        if (t.name == spec.name) inputs.push_back(std::move(t));
      }
    }
    if (served->monitor) served->monitor->ObserveInputs(inputs);
    InferTimings timings;
    InferResponse response;
    response.outputs =
        served->scheduler->Infer(std::move(inputs), std::move(outputs), until, &timings);
    if (served->monitor) served->monitor->Observe(response.outputs);
    if (writes_regions) WriteOutputRegions(response, request, shared_memory_);
    response.model_name = served->config.name;
    response.model_version = served->config.version;
    response.id = std::move(request.id);
    metrics.success->Add();
    metrics.queue->Observe(Seconds(timings.queue));
    metrics.compute->Observe(Seconds(timings.compute));
    const auto took = Clock::now() - start;
    metrics.request->Observe(Seconds(took));
    requests_.fetch_add(1, std::memory_order_relaxed);
    latency_ns_.fetch_add(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()),
        std::memory_order_relaxed);
    return response;
  } catch (const Error& e) {
    metrics.Failure(FailureReason(e.code())).Add();
    requests_.fetch_add(1, std::memory_order_relaxed);
    failures_.fetch_add(1, std::memory_order_relaxed);
    throw;
  } catch (const std::exception& e) {
    metrics.Failure("internal").Add();
    requests_.fetch_add(1, std::memory_order_relaxed);
    failures_.fetch_add(1, std::memory_order_relaxed);
    throw Error(ErrorCode::kInternal, e.what());
  }
}

}  // namespace outpost
