#include "runtime/torch_backend.h"

#include <dlfcn.h>

#include <mutex>

#include "core/error.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;

using LoadFn = Model* (*)(const char*, const RuntimeOptions*, std::string*);
using VersionFn = const char* (*)();

// Beside the running program, as its RUNPATH finds ONNX Runtime: <bin>/../lib.
fs::path ModulePath() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return exe.parent_path().parent_path() / "lib" / "liboutpost_torch.so";
}

struct Backend {
  LoadFn load = nullptr;
  VersionFn version = nullptr;
  std::string error;
};

// Opened once and never closed: models it made live in its code.
const Backend& Open() {
  static const Backend backend = [] {
    Backend b;
#ifndef OUTPOST_HAVE_TORCH
    b.error = "this agent was built without libtorch (OUTPOST_WITH_TORCH=OFF)";
    return b;
#else
    fs::path path = ModulePath();
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = ::dlerror();
      b.error = "cannot open the libtorch backend " + path.string() + ": " + (why ? why : "?");
      return b;
    }
    b.load = reinterpret_cast<LoadFn>(::dlsym(handle, "outpost_torch_load"));
    b.version = reinterpret_cast<VersionFn>(::dlsym(handle, "outpost_torch_version"));
    if (!b.load || !b.version) b.error = path.string() + " is not an Outpost libtorch backend";
    return b;
#endif
  }();
  return backend;
}

}  // namespace

std::unique_ptr<Model> LoadTorchScriptModel(const fs::path& path, const RuntimeOptions& options) {
  const Backend& b = Open();
  if (!b.error.empty())
    Fail(ErrorCode::kInvalidArgument,
         path.string() + ": cannot serve TorchScript models: " + b.error);
  std::string error;
  Model* model = b.load(path.c_str(), &options, &error);
  if (!model) Fail(ErrorCode::kInvalidArgument, error);
  return std::unique_ptr<Model>(model);
}

bool HaveTorchBackend() {
#ifdef OUTPOST_HAVE_TORCH
  std::error_code ec;
  return fs::exists(ModulePath(), ec);
#else
  return false;
#endif
}

std::string TorchVersion() {
  const Backend& b = Open();
  return b.error.empty() ? b.version() : "";
}

}  // namespace outpost
