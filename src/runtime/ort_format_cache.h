// ONNX models kept a second time in ONNX Runtime's own format, optimized once for this CPU and
// ORT build. A load maps the derived file and lets ORT use its initializers where they lie
// (session.use_ort_model_bytes_for_initializers); parsing ONNX instead copies every weight out
// of the protobuf into the heap, where about 1.75x the weights stay resident.
//
// The signed ONNX file stays the source of truth: a derived file is used only while an HMAC
// under this agent's key binds it to the source's SHA-256, the ORT version and the CPU's
// features (level-3 optimizations pick kernels and layouts for the CPU they ran on), and it is
// made again whenever that check fails.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace outpost {

// A file mapped read-only for as long as the object lives.
class MappedFile {
 public:
  // Throws Error(kNotFound) when it cannot be opened (symlinks are not followed).
  static std::shared_ptr<MappedFile> Open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }
  // Unmaps the pages from this process; the next read takes them from the page cache again.
  void DropResidentPages() const;

 private:
  MappedFile(void* data, size_t size) : data_(data), size_(size) {}
  void* data_;
  size_t size_;
};

struct OrtFormatCache {
  std::filesystem::path dir;  // made 0700 on first use
  std::string key;            // HMAC key; empty: nothing is derived
};

// The key in `file`, made (32 random bytes, 0600) when there is none. Throws Error
// (kFailedPrecondition) for a key file others may read or one not owned by this user.
std::string LoadOrCreateDerivationKey(const std::filesystem::path& file);

// What identifies this CPU to its kernels: a hash of the feature flags /proc/cpuinfo lists.
std::string CpuFeatureFingerprint();

// The ORT-format model derived from `source` (ONNX bytes) under `name` in the cache, made with
// `save` when none verifies; `save` writes the model, optimized, in ORT format to the path it is
// given. Null when the model cannot be kept in ORT format or the cache cannot be written: the
// reason is logged (naming `origin`) and the caller loads the ONNX model as it is.
std::shared_ptr<MappedFile> DerivedOrtModel(
    const OrtFormatCache& cache, const std::string& name, std::string_view source,
    const std::string& origin, std::string_view ort_version,
    const std::function<void(const std::filesystem::path&)>& save);

}  // namespace outpost
