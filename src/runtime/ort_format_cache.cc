#include "runtime/ort_format_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_input.h"
#include "core/logging.h"
#include "package/keys.h"
#include "package/sha256.h"

namespace outpost {
namespace fs = std::filesystem;

std::shared_ptr<MappedFile> MappedFile::Open(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) Fail(ErrorCode::kNotFound, "cannot open " + path.string());
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
    ::close(fd);
    Fail(ErrorCode::kNotFound, path.string() + " is not a non-empty regular file");
  }
  void* data = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (data == MAP_FAILED) Fail(ErrorCode::kInternal, "cannot map " + path.string());
  return std::shared_ptr<MappedFile>(new MappedFile(data, static_cast<size_t>(st.st_size)));
}

MappedFile::~MappedFile() { munmap(data_, size_); }

void MappedFile::DropResidentPages() const { madvise(data_, size_, MADV_DONTNEED); }

namespace {

// What the HMAC covers: everything a derived file's validity depends on.
std::string Authenticator(const std::string& key, const std::string& source_sha256,
                          std::string_view ort_version, const std::string& cpu,
                          const std::string& derived_sha256) {
  std::string message = fmt::format("outpost-ort-format-v1\n{}\n{}\n{}\n{}\n", source_sha256,
                                    ort_version, cpu, derived_sha256);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(message.data()), message.size(), md, &len))
    Fail(ErrorCode::kInternal, "HMAC-SHA-256 failed");
  return ToHex({reinterpret_cast<const char*>(md), len});
}

void FsyncFile(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) Fail(ErrorCode::kInternal, "cannot open " + path.string());
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) Fail(ErrorCode::kInternal, "cannot sync " + path.string());
}

void PrepareDirectory(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_symlink(dir, ec)) Fail(ErrorCode::kFailedPrecondition, dir.string() + " is a symlink");
  fs::create_directories(dir, ec);
  if (ec)
    Fail(ErrorCode::kFailedPrecondition, "cannot create " + dir.string() + ": " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, ec);
}

void LogKeptAsOnnx(const std::string& origin, const std::string& reason) {
  Log(LogSeverity::kInfo, "runtime", "ort_format_skipped",
      fmt::format("{}: loaded as ONNX, not from an ORT-format copy ({})", origin, reason),
      {{"model_file", origin}, {"reason", reason}});
}

}  // namespace

std::string LoadOrCreateDerivationKey(const fs::path& file) {
  struct stat st {};
  if (lstat(file.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
      Fail(ErrorCode::kFailedPrecondition,
           file.string() + " is not a regular file owned by this user");
    RequirePrivateFile(file);
    std::string key = ReadFile(file);
    if (key.size() != 32)
      Fail(ErrorCode::kFailedPrecondition, file.string() + " does not hold a 32-byte key");
    return key;
  }
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), 32) != 1)
    Fail(ErrorCode::kInternal, "no random bytes for " + file.string());
  WriteFileAtomically(file, key, 0600);
  return key;
}

std::string CpuFeatureFingerprint() {
  static const std::string fingerprint = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0)
        return Sha256Hex(line).substr(0, 16);
    }
    return std::string("unknown");
  }();
  return fingerprint;
}

std::shared_ptr<MappedFile> DerivedOrtModel(const OrtFormatCache& cache, const std::string& name,
                                            std::string_view source, const std::string& origin,
                                            std::string_view ort_version,
                                            const std::function<void(const fs::path&)>& save) {
  if (cache.dir.empty() || cache.key.empty()) return nullptr;
  const fs::path derived = cache.dir / (name + ".ort");
  const fs::path record_path = cache.dir / (name + ".ort.json");
  const std::string source_sha256 = Sha256Hex(source);
  const std::string cpu = CpuFeatureFingerprint();
  // Why a record does not describe this source on this ORT and CPU (empty: it does).
  auto changed = [&](const nlohmann::json& r) -> std::string {
    if (r.value("source_sha256", "") != source_sha256) return "the model changed";
    if (r.value("onnxruntime", "") != ort_version) return "ONNX Runtime changed";
    if (r.value("cpu", "") != cpu) return "the CPU's features changed";
    return "";
  };

  std::string remake_reason;
  try {
    std::error_code ec;
    if (fs::exists(record_path, ec)) {
      // Written by this agent, but in a directory others may have written to: parsed as any
      // outside JSON is.
      auto record = ParseJson(ReadFile(record_path), JsonLimits::Control(), record_path.string());
      remake_reason = changed(record);
      if (remake_reason.empty()) {
        if (record.contains("unsupported")) {
          LogKeptAsOnnx(origin, record["unsupported"].get<std::string>());
          return nullptr;
        }
        auto mapped = MappedFile::Open(derived);
        std::string expected = record.value("hmac", "");
        std::string actual =
            Authenticator(cache.key, source_sha256, ort_version, cpu, Sha256Hex(mapped->bytes()));
        if (expected.size() == actual.size() &&
            CRYPTO_memcmp(expected.data(), actual.data(), actual.size()) == 0)
          return mapped;
        remake_reason = "it failed verification";
      }
    }
  } catch (const std::exception& e) {
    remake_reason = std::string("it could not be read: ") + e.what();
  }
  if (!remake_reason.empty())
    Log(LogSeverity::kWarn, "runtime", "ort_format_remade",
        fmt::format("{}: making its ORT-format copy again: {}", origin, remake_reason),
        {{"model_file", origin}, {"reason", remake_reason}});

  static std::atomic<unsigned> counter{0};
  const fs::path tmp = cache.dir / fmt::format(".{}.ort.tmp-{}-{}", name, getpid(), counter++);
  try {
    PrepareDirectory(cache.dir);
    try {
      save(tmp);
    } catch (const std::exception& e) {
      // The model itself cannot be kept in ORT format: say so once, and load it as ONNX.
      std::error_code ec;
      fs::remove(tmp, ec);
      nlohmann::json record{{"source_sha256", source_sha256},
                            {"onnxruntime", ort_version},
                            {"cpu", cpu},
                            {"unsupported", e.what()}};
      WriteFileAtomically(record_path, record.dump(2) + "\n", 0600);
      LogKeptAsOnnx(origin, e.what());
      return nullptr;
    }
    FsyncFile(tmp);
    fs::rename(tmp, derived);
    auto mapped = MappedFile::Open(derived);
    nlohmann::json record{{"source_sha256", source_sha256},
                          {"onnxruntime", ort_version},
                          {"cpu", cpu},
                          {"hmac", Authenticator(cache.key, source_sha256, ort_version, cpu,
                                                 Sha256Hex(mapped->bytes()))}};
    WriteFileAtomically(record_path, record.dump(2) + "\n", 0600);
    return mapped;
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    LogKeptAsOnnx(origin, std::string("the copy cannot be written: ") + e.what());
    return nullptr;
  }
}

}  // namespace outpost
