#include "serving/grpc_server.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <limits>
#include <thread>

#include "auth/authorizer.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/memory_budget.h"
#include "core/names.h"
#include "grpc_service.grpc.pb.h"

namespace outpost {
namespace {

grpc::StatusCode GrpcCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorCode::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case ErrorCode::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case ErrorCode::kResourceExhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case ErrorCode::kDeadlineExceeded:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case ErrorCode::kPayloadTooLarge:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case ErrorCode::kFailedPrecondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case ErrorCode::kPermissionDenied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case ErrorCode::kUnauthenticated:
      return grpc::StatusCode::UNAUTHENTICATED;
    case ErrorCode::kInternal:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::INTERNAL;
}

// Runs a handler and converts what it throws, once, to a gRPC status.
template <typename F>
grpc::Status Guard(F&& f) {
  try {
    f();
    return grpc::Status::OK;
  } catch (const Error& e) {
    return grpc::Status(GrpcCode(e.code()), e.what());
  } catch (const std::exception& e) {
    Log(LogSeverity::kError, "serving", "handler_failed",
        std::string("grpc handler failed: ") + e.what());
    return grpc::Status(grpc::StatusCode::INTERNAL, e.what());
  }
}

// The request id of a call: the client's x-request-id metadata when it is a safe token, else a
// new one; sent back in the initial metadata and set for the handling thread's log events.
// The call ends in a "request" event at debug level.
template <typename F>
grpc::Status Traced(grpc::ServerContext* ctx, const char* method, F&& f) {
  const auto start = std::chrono::steady_clock::now();
  std::string_view client;
  const auto& metadata = ctx->client_metadata();
  if (auto it = metadata.find("x-request-id"); it != metadata.end())
    client = std::string_view(it->second.data(), it->second.size());
  RequestIdScope scope(AcceptRequestId(client));
  ctx->AddInitialMetadata("x-request-id", CurrentRequestId());
  grpc::Status status = Guard(std::forward<F>(f));
  if (LogEnabled(LogSeverity::kDebug)) {
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    Log(LogSeverity::kDebug, "serving", "request",
        std::string(method) + " " + std::to_string(status.error_code()),
        {{"protocol", "grpc"},
         {"method", method},
         {"status", static_cast<int>(status.error_code())},
         {"duration_ms", ms}});
  }
  return status;
}

template <typename T, typename Repeated>
void PackIntegers(std::string& out, const Repeated& values, const std::string& where) {
  out.reserve(values.size() * sizeof(T));
  for (auto v : values) {
    if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
      Fail(ErrorCode::kInvalidArgument,
           where + ": value " + std::to_string(v) + " is out of range");
    }
    T t = static_cast<T>(v);
    out.append(reinterpret_cast<const char*>(&t), sizeof t);
  }
}

template <typename T, typename Repeated>
void PackValues(std::string& out, const Repeated& values) {
  out.reserve(values.size() * sizeof(T));
  for (auto v : values) {
    T t = static_cast<T>(v);
    out.append(reinterpret_cast<const char*>(&t), sizeof t);
  }
}

// Typed contents to the raw form. Exactly one field may be set, and it must be the one
// the datatype calls for.
std::string PackContents(const inference::InferTensorContents& c, DataType dt,
                         const std::string& where) {
  std::string out;
  int fields = (c.bool_contents_size() > 0) + (c.int_contents_size() > 0) +
               (c.int64_contents_size() > 0) + (c.uint_contents_size() > 0) +
               (c.uint64_contents_size() > 0) + (c.fp32_contents_size() > 0) +
               (c.fp64_contents_size() > 0) + (c.bytes_contents_size() > 0);
  if (fields > 1)
    Fail(ErrorCode::kInvalidArgument, where + ": more than one contents field is set");
  auto wrong = [&](const char* field) {
    Fail(ErrorCode::kInvalidArgument,
         where + ": datatype " + std::string(DataTypeName(dt)) + " takes " + field);
  };
  switch (dt) {
    case DataType::kBool:
      if (fields && !c.bool_contents_size()) wrong("bool_contents");
      PackValues<uint8_t>(out, c.bool_contents());
      break;
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
      if (fields && !c.int_contents_size()) wrong("int_contents");
      if (dt == DataType::kInt8) PackIntegers<int8_t>(out, c.int_contents(), where);
      if (dt == DataType::kInt16) PackIntegers<int16_t>(out, c.int_contents(), where);
      if (dt == DataType::kInt32) PackValues<int32_t>(out, c.int_contents());
      break;
    case DataType::kInt64:
      if (fields && !c.int64_contents_size()) wrong("int64_contents");
      PackValues<int64_t>(out, c.int64_contents());
      break;
    case DataType::kUint8:
    case DataType::kUint16:
    case DataType::kUint32:
      if (fields && !c.uint_contents_size()) wrong("uint_contents");
      if (dt == DataType::kUint8) PackIntegers<uint8_t>(out, c.uint_contents(), where);
      if (dt == DataType::kUint16) PackIntegers<uint16_t>(out, c.uint_contents(), where);
      if (dt == DataType::kUint32) PackValues<uint32_t>(out, c.uint_contents());
      break;
    case DataType::kUint64:
      if (fields && !c.uint64_contents_size()) wrong("uint64_contents");
      PackValues<uint64_t>(out, c.uint64_contents());
      break;
    case DataType::kFp32:
      if (fields && !c.fp32_contents_size()) wrong("fp32_contents");
      PackValues<float>(out, c.fp32_contents());
      break;
    case DataType::kFp64:
      if (fields && !c.fp64_contents_size()) wrong("fp64_contents");
      PackValues<double>(out, c.fp64_contents());
      break;
    case DataType::kBytes:
      if (fields && !c.bytes_contents_size()) wrong("bytes_contents");
      for (const auto& b : c.bytes_contents()) AppendBytesElement(out, b);
      break;
    case DataType::kFp16:
    case DataType::kBf16:
      if (fields)
        Fail(ErrorCode::kInvalidArgument,
             where + ": " + std::string(DataTypeName(dt)) + " must be sent as raw_input_contents");
      break;
  }
  return out;
}

// Triton's shared-memory parameters of a tensor: nothing when none is given.
std::optional<SharedMemoryRef> RegionOf(
    const google::protobuf::Map<std::string, inference::InferParameter>& parameters,
    const std::string& where) {
  auto find = [&](const char* key) -> const inference::InferParameter* {
    auto it = parameters.find(key);
    return it == parameters.end() ? nullptr : &it->second;
  };
  const auto* region = find("shared_memory_region");
  const auto* size = find("shared_memory_byte_size");
  const auto* offset = find("shared_memory_offset");
  if (!region && !size && !offset) return std::nullopt;
  if (!region || region->parameter_choice_case() != inference::InferParameter::kStringParam)
    Fail(ErrorCode::kInvalidArgument, where + ": shared_memory_region must be a string parameter");
  SharedMemoryRef ref{region->string_param(), 0, 0};
  auto number = [&](const inference::InferParameter* p, const char* key) -> uint64_t {
    if (p->parameter_choice_case() != inference::InferParameter::kInt64Param ||
        p->int64_param() < 0)
      Fail(ErrorCode::kInvalidArgument,
           where + ": " + key + " must be a non-negative int64 parameter");
    return static_cast<uint64_t>(p->int64_param());
  };
  if (!size)
    Fail(ErrorCode::kInvalidArgument,
         where + ": shared_memory_region given without shared_memory_byte_size");
  ref.byte_size = number(size, "shared_memory_byte_size");
  if (offset) ref.offset = number(offset, "shared_memory_offset");
  return ref;
}

InferRequest FromProto(inference::ModelInferRequest& in) {
  InferRequest req;
  req.model_name = in.model_name();
  req.model_version = in.model_version();
  req.id = in.id();
  if (auto it = in.parameters().find("timeout");
      it != in.parameters().end() && it->second.int64_param() > 0) {
    req.timeout = std::chrono::microseconds(it->second.int64_param());
  }
  // Inputs in shared memory have no raw contents: the entries are those of the others in
  // order (Triton's clients), or one per input with the shared-memory ones empty.
  std::vector<std::optional<SharedMemoryRef>> regions;
  int in_regions = 0;
  for (const auto& pin : in.inputs()) {
    regions.push_back(RegionOf(pin.parameters(), "input '" + pin.name() + "'"));
    in_regions += regions.back().has_value();
  }
  const int raw_count = in.raw_input_contents_size();
  const bool raw = raw_count > 0;
  const bool raw_per_input = raw_count == in.inputs_size();
  if (raw && !raw_per_input && raw_count != in.inputs_size() - in_regions) {
    Fail(ErrorCode::kInvalidArgument,
         "raw_input_contents has " + std::to_string(raw_count) + " entries for " +
             std::to_string(in.inputs_size()) + " inputs" +
             (in_regions ? " (" + std::to_string(in_regions) + " in shared memory)" : ""));
  }
  int next_raw = 0;
  for (int i = 0; i < in.inputs_size(); ++i) {
    auto& pin = *in.mutable_inputs(i);
    std::string where = "input '" + pin.name() + "'";
    auto dtype = ParseDataType(pin.datatype());
    if (!dtype)
      Fail(ErrorCode::kInvalidArgument, where + ": unknown datatype '" + pin.datatype() + "'");
    Tensor t{pin.name(), *dtype, Shape(pin.shape().begin(), pin.shape().end()), {}};
    for (auto d : t.shape) {
      if (d < 0)
        Fail(ErrorCode::kInvalidArgument,
             where + ": shape " + ShapeToString(t.shape) + " has a negative dimension");
    }
    auto& ref = regions[static_cast<size_t>(i)];
    if (ref) {
      if (pin.has_contents() || (raw_per_input && !in.raw_input_contents(i).empty()))
        Fail(ErrorCode::kInvalidArgument, where + ": has shared_memory_region and also contents");
      if (raw_per_input) ++next_raw;
      req.input_regions.resize(regions.size());
      req.input_regions[req.inputs.size()] = std::move(ref);
      req.inputs.push_back(std::move(t));  // its data is read from the region later
      continue;
    }
    if (raw) {
      if (pin.has_contents())
        Fail(ErrorCode::kInvalidArgument,
             where + ": has contents although raw_input_contents is used");
      t.data = std::move(*in.mutable_raw_input_contents(next_raw++));
    } else {
      t.data = PackContents(pin.contents(), t.dtype, where);
    }
    ValidateTensorData(t, "input");
    req.inputs.push_back(std::move(t));
  }
  for (const auto& o : in.outputs())
    req.outputs.push_back({o.name(), true, RegionOf(o.parameters(), "output '" + o.name() + "'")});
  return req;
}

void FillTensorMetadata(
    const std::vector<TensorSpec>& specs,
    google::protobuf::RepeatedPtrField<inference::ModelMetadataResponse::TensorMetadata>* out) {
  for (const auto& s : specs) {
    auto* t = out->Add();
    t->set_name(s.name);
    t->set_datatype(std::string(DataTypeName(s.dtype)));
    for (auto d : s.shape) t->add_shape(d);
  }
}

std::string_view MetadataValue(const grpc::ServerContext* ctx, const char* key) {
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) return {};
  return {it->second.data(), it->second.size()};
}

// What each method accepts: the server's health and metadata answer `observe` and
// `inference` alike; model methods need `inference`.
constexpr auth::Scopes kStatus = auth::Scope::kObserve | auth::Scope::kInference;
constexpr auth::Scopes kInference = static_cast<auth::Scopes>(auth::Scope::kInference);
constexpr auth::Scopes kObserve = static_cast<auth::Scopes>(auth::Scope::kObserve);
constexpr auth::Scopes kAdmin = static_cast<auth::Scopes>(auth::Scope::kAdmin);

// As for HTTP: Triton's "config" and "file:" overrides would serve bytes no signature covers.
void CheckRepositoryParameters(
    const google::protobuf::Map<std::string, inference::ModelRepositoryParameter>& parameters) {
  for (const auto& [name, _] : parameters)
    if (name != "unload_dependents")
      Fail(ErrorCode::kInvalidArgument,
           "parameter '" + name +
               "' is not supported: models load only from the signed files in the repository");
}

}  // namespace

class GrpcServer::Impl final : public inference::GRPCInferenceService::Service {
 public:
  Impl(InferenceService& service, const ServerInfo& info, const GrpcOptions& options)
      : service_(service),
        info_(info),
        budget_(options.budget),
        keys_(options.keys),
        open_(options.open_scopes),
        subjects_(options.tls_client_subjects),
        model_control_(options.model_control) {}

  grpc::Status ServerLive(grpc::ServerContext* ctx, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* res) override {
    if (grpc::Status refused = Admit(ctx, kStatus); !refused.ok()) return refused;
    res->set_live(true);
    return grpc::Status::OK;
  }

  grpc::Status ServerReady(grpc::ServerContext* ctx, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* res) override {
    if (grpc::Status refused = Admit(ctx, kStatus); !refused.ok()) return refused;
    res->set_ready(service_.models().IsReady());
    return grpc::Status::OK;
  }

  grpc::Status ModelReady(grpc::ServerContext* ctx, const inference::ModelReadyRequest* req,
                          inference::ModelReadyResponse* res) override {
    if (grpc::Status refused = Admit(ctx, kInference); !refused.ok()) return refused;
    try {
      service_.models().Get(req->name(), req->version());
      res->set_ready(true);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kUnavailable && e.code() != ErrorCode::kNotFound) throw;
      res->set_ready(false);
    }
    return grpc::Status::OK;
  }

  grpc::Status ServerMetadata(grpc::ServerContext* ctx, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* res) override {
    if (grpc::Status refused = Admit(ctx, kStatus); !refused.ok()) return refused;
    res->set_name(info_.name);
    res->set_version(info_.version);
    for (const auto& e : info_.extensions) res->add_extensions(e);
    return grpc::Status::OK;
  }

  grpc::Status ModelMetadata(grpc::ServerContext* ctx, const inference::ModelMetadataRequest* req,
                             inference::ModelMetadataResponse* res) override {
    if (grpc::Status refused = Admit(ctx, kInference); !refused.ok()) return refused;
    return Guard([&] {
      auto served = service_.models().Get(req->name(), req->version());
      const auto& c = served->config;
      res->set_name(c.name);
      for (const auto& v : service_.models().ReadyVersions(c.name)) res->add_versions(v);
      res->set_platform(c.platform);
      FillTensorMetadata(c.inputs, res->mutable_inputs());
      FillTensorMetadata(c.outputs, res->mutable_outputs());
    });
  }

  grpc::Status ModelInfer(grpc::ServerContext* ctx, const inference::ModelInferRequest* req,
                          inference::ModelInferResponse* res) override {
    std::string caller;
    if (grpc::Status refused = Admit(ctx, kInference, &caller); !refused.ok()) return refused;
    return Traced(ctx, "ModelInfer", [&] {
      // The request is ours to take apart: move the raw contents instead of copying them.
      auto& mutable_req = const_cast<inference::ModelInferRequest&>(*req);
      const size_t request_bytes = req->ByteSizeLong();
      struct ReturnMemory {
        size_t bytes;
        ~ReturnMemory() {
          if (bytes >= (4u << 20)) NoteLargeRequest();
        }
      } return_memory{request_bytes};
      // Declared after return_memory: released before the memory is handed back.
      BudgetHold hold(budget_);
      hold.Add(request_bytes, "the request");
      InferRequest request = FromProto(mutable_req);
      request.caller.id = caller;
      std::optional<Clock::time_point> deadline;
      auto grpc_deadline = ctx->deadline();
      if (grpc_deadline != std::chrono::system_clock::time_point::max()) {
        deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      grpc_deadline - std::chrono::system_clock::now());
      }
      std::map<std::string, SharedMemoryRef> output_regions;
      for (const auto& o : request.outputs)
        if (o.shared_memory) output_regions[o.name] = *o.shared_memory;
      InferResponse response = service_.Infer(std::move(request), deadline, &hold);
      for (const auto& t : response.outputs) hold.AddDone(t.data.size());
      res->set_model_name(response.model_name);
      res->set_model_version(response.model_version);
      res->set_id(response.id);
      for (auto& t : response.outputs) {
        auto* out = res->add_outputs();
        out->set_name(t.name);
        out->set_datatype(std::string(DataTypeName(t.dtype)));
        for (auto dim : t.shape) out->add_shape(dim);
        if (auto r = output_regions.find(t.name); r != output_regions.end()) {
          // Written to the client's region; an empty entry keeps raw contents aligned.
          auto& params = *out->mutable_parameters();
          params["shared_memory_region"].set_string_param(r->second.region);
          params["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(t.data.size()));
          if (r->second.offset)
            params["shared_memory_offset"].set_int64_param(static_cast<int64_t>(r->second.offset));
          res->add_raw_output_contents();
        } else {
          res->add_raw_output_contents(std::move(t.data));
        }
      }
    });
  }

  grpc::Status RepositoryIndex(grpc::ServerContext* ctx,
                               const inference::RepositoryIndexRequest* req,
                               inference::RepositoryIndexResponse* res) override {
    if (grpc::Status refused = Admit(ctx, kObserve); !refused.ok()) return refused;
    return Guard([&] {
      for (const auto& e : service_.models().Index()) {
        if (req->ready() && e.state != VersionState::kReady) continue;
        auto* m = res->add_models();
        m->set_name(e.name);
        m->set_version(e.version);
        m->set_state(std::string(VersionStateName(e.state)));
        m->set_reason(e.reason);
      }
    });
  }

  grpc::Status RepositoryModelLoad(grpc::ServerContext* ctx,
                                   const inference::RepositoryModelLoadRequest* req,
                                   inference::RepositoryModelLoadResponse*) override {
    return ControlModel(ctx, req->model_name(), req->parameters(), /*load=*/true);
  }

  grpc::Status RepositoryModelUnload(grpc::ServerContext* ctx,
                                     const inference::RepositoryModelUnloadRequest* req,
                                     inference::RepositoryModelUnloadResponse*) override {
    return ControlModel(ctx, req->model_name(), req->parameters(), /*load=*/false);
  }

  grpc::Status SystemSharedMemoryStatus(grpc::ServerContext* ctx,
                                        const inference::SystemSharedMemoryStatusRequest* req,
                                        inference::SystemSharedMemoryStatusResponse* res) override {
    std::string caller;
    if (grpc::Status refused = Admit(ctx, kInference, &caller); !refused.ok()) return refused;
    return Guard([&] {
      for (const auto& r : service_.shared_memory().Status(req->name(), {caller, {}})) {
        auto& out = (*res->mutable_regions())[r.name];
        out.set_name(r.name);
        out.set_key(r.key);
        out.set_offset(r.offset);
        out.set_byte_size(r.byte_size);
      }
    });
  }

  grpc::Status SystemSharedMemoryRegister(grpc::ServerContext* ctx,
                                          const inference::SystemSharedMemoryRegisterRequest* req,
                                          inference::SystemSharedMemoryRegisterResponse*) override {
    std::string caller;
    if (grpc::Status refused = Admit(ctx, kInference, &caller); !refused.ok()) return refused;
    return Traced(ctx, "SystemSharedMemoryRegister", [&] {
      service_.shared_memory().Register(req->name(), req->key(), req->offset(), req->byte_size(),
                                        {caller, {}});
    });
  }

  grpc::Status SystemSharedMemoryUnregister(
      grpc::ServerContext* ctx, const inference::SystemSharedMemoryUnregisterRequest* req,
      inference::SystemSharedMemoryUnregisterResponse*) override {
    std::string caller;
    if (grpc::Status refused = Admit(ctx, kInference, &caller); !refused.ok()) return refused;
    return Guard([&] { service_.shared_memory().Unregister(req->name(), {caller, {}}); });
  }

 private:
  grpc::Status ControlModel(
      grpc::ServerContext* ctx, const std::string& model,
      const google::protobuf::Map<std::string, inference::ModelRepositoryParameter>& parameters,
      bool load) {
    std::string caller;
    if (grpc::Status refused = Admit(ctx, kAdmin, &caller); !refused.ok()) return refused;
    if (!model_control_)
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "model control is not offered here");
    return Guard([&] {
      if (!IsValidModelName(model)) Fail(ErrorCode::kInvalidArgument, "invalid model name");
      CheckRepositoryParameters(parameters);
      model_control_(model, load, caller);
    });
  }

  // The call's credential (authorization: Bearer <key>, or x-api-key metadata) against what
  // the method accepts.
  // `caller`, when given, receives who the caller is (for what it owns: regions, audit lines).
  grpc::Status Admit(const grpc::ServerContext* ctx, auth::Scopes accepted,
                     std::string* caller = nullptr) const {
    const auth::Decision d = Decide(ctx, accepted);
    if (caller) *caller = d.caller;
    if (d.allowed) return grpc::Status::OK;
    return grpc::Status(GrpcCode(d.code), d.message);
  }

  auth::Decision Decide(const grpc::ServerContext* ctx, auth::Scopes accepted) const {
    auth::Scopes open = open_;
    if (!subjects_.subjects.empty()) {
      // A client certificate the CA vouched for (the handshake verified it) grants its
      // subject's scopes.
      for (const auto& subject :
           ctx->auth_context()->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME))
        open |= subjects_.For(std::string_view(subject.data(), subject.size()));
    }
    return auth::Authorize(
        keys_,
        auth::PresentedKey(MetadataValue(ctx, "authorization"), MetadataValue(ctx, "x-api-key")),
        open, accepted);
  }

  InferenceService& service_;
  const ServerInfo& info_;
  MemoryBudget* budget_;
  const auth::ApiKeyStore* keys_;
  auth::Scopes open_;
  auth::SubjectPolicy subjects_;
  std::function<std::vector<IndexEntry>(const std::string&, bool, const std::string&)>
      model_control_;
};

GrpcServer::GrpcServer(GrpcOptions options, InferenceService& service, const ServerInfo& info)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(service, info, options_)) {}

GrpcServer::~GrpcServer() { Stop(); }

std::shared_ptr<grpc::ServerCredentials> GrpcServer::Credentials() const {
  if (options_.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  // Readable now, or the start fails here rather than at every handshake.
  RequirePrivateFile(options_.tls_key_file);
  for (const auto& f : {options_.tls_cert_file, options_.tls_key_file, options_.tls_client_ca_file})
    if (!f.empty()) ReadFile(f);
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options_.tls_key_file, options_.tls_cert_file, options_.tls_client_ca_file,
      options_.tls_reload_secs);
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (!options_.tls_client_ca_file.empty()) {
    tls.watch_root_certs();
    // Optional: clients without a certificate still connect and present API keys.
    tls.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

int GrpcServer::Start() {
  grpc::ServerBuilder builder;
  int bound = 0;
  std::string address = options_.address.find(':') != std::string::npos
                            ? "[" + options_.address + "]"
                            : options_.address;
  builder.AddListeningPort(address + ":" + std::to_string(options_.port), Credentials(), &bound);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.RegisterService(impl_.get());
  // gRPC enables SO_REUSEPORT by default: a second process could bind the port and take traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Budgets: streams per connection, a memory quota over every call's buffers (under pressure
  // gRPC shrinks its flow-control windows and refuses new work instead of growing), a bounded
  // thread count, and a handshake that must finish in time (a silent connection costs nothing).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 300000);
  grpc::ResourceQuota quota("outpost-grpc");
  quota.Resize(std::max(options_.max_inflight_bytes / 2, options_.max_message_bytes));
  quota.SetMaxThreads(options_.max_threads);
  builder.SetResourceQuota(quota);
  // The synchronous server runs each call on a thread that was polling, and a thread that comes
  // back to poll when more than MAX_POLLERS (2 by default) already do exits. Calls one after
  // another then end threads and start new ones by the hundred: a new thread's stack is faulted
  // in and ONNX Runtime's per-thread buffers are made again. Pollers enough to cover one call
  // per core keep a small, stable set of threads.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              std::max(4, static_cast<int>(std::thread::hardware_concurrency())));

  server_ = builder.BuildAndStart();
  if (!server_ || bound == 0) {
    Fail(ErrorCode::kUnavailable,
         "cannot listen for gRPC on " + options_.address + ":" + std::to_string(options_.port));
  }
  return bound;
}

void GrpcServer::Stop() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
    server_.reset();
  }
}

}  // namespace outpost
