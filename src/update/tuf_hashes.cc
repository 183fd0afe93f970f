#include "update/tuf_hashes.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"
#include "package/keys.h"

namespace outpost::tuf {
namespace {

// BLAKE2b with a 256-bit output is not an OpenSSL 3.0 digest; libsodium's generichash is
// BLAKE2b of any output length.
constexpr const char* kBlake2b256 = "blake2b-256";

const EVP_MD* Digest(const std::string& algorithm) {
  if (algorithm == "sha224") return EVP_sha224();
  if (algorithm == "sha256") return EVP_sha256();
  if (algorithm == "sha384") return EVP_sha384();
  if (algorithm == "sha512") return EVP_sha512();
  if (algorithm == "blake2b") return EVP_blake2b512();
  if (algorithm == "blake2s") return EVP_blake2s256();
  return nullptr;
}

// One algorithm's running hash.
class Running {
 public:
  explicit Running(const std::string& algorithm) {
    if (algorithm == kBlake2b256) {
      if (sodium_init() < 0) Fail(ErrorCode::kInternal, "libsodium failed to initialise");
      crypto_generichash_init(&blake_, nullptr, 0, 32);
      sodium_ = true;
      return;
    }
    const EVP_MD* md = Digest(algorithm);
    ctx_.reset(EVP_MD_CTX_new());
    if (!md || !ctx_ || EVP_DigestInit_ex(ctx_.get(), md, nullptr) != 1)
      Fail(ErrorCode::kInvalidArgument, "no hash algorithm '" + algorithm + "'");
  }
  void Update(std::string_view data) {
    if (sodium_) {
      crypto_generichash_update(&blake_, reinterpret_cast<const unsigned char*>(data.data()),
                                data.size());
    } else {
      EVP_DigestUpdate(ctx_.get(), data.data(), data.size());
    }
  }
  std::string Hex() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 32;
    if (sodium_) {
      crypto_generichash_final(&blake_, out, len);
    } else {
      EVP_DigestFinal_ex(ctx_.get(), out, &len);
    }
    return ToHex(std::string_view(reinterpret_cast<const char*>(out), len));
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
  crypto_generichash_state blake_{};
  bool sodium_ = false;
};

std::vector<std::pair<std::string, Running>> Start(const std::map<std::string, std::string>& hashes,
                                                   const std::string& what) {
  std::vector<std::pair<std::string, Running>> out;
  for (const auto& [algorithm, hex] : hashes) {
    if (!HashAlgorithmSupported(algorithm))
      Fail(ErrorCode::kPermissionDenied,
           "tuf: " + what + ": cannot check a '" + algorithm + "' hash (unknown algorithm)");
    out.emplace_back(algorithm, Running(algorithm));
  }
  return out;
}

void Finish(std::vector<std::pair<std::string, Running>>& running,
            const std::map<std::string, std::string>& hashes, const std::string& what) {
  for (auto& [algorithm, r] : running)
    if (r.Hex() != hashes.at(algorithm))
      Fail(ErrorCode::kPermissionDenied,
           "tuf: " + what + ": " + algorithm + " differs from the one signed for it");
}

}  // namespace

bool HashAlgorithmSupported(const std::string& algorithm) {
  return algorithm == kBlake2b256 || Digest(algorithm) != nullptr;
}

std::string HashHex(const std::string& algorithm, std::string_view data) {
  Running r(algorithm);
  r.Update(data);
  return r.Hex();
}

void CheckHashes(std::string_view data, const std::map<std::string, std::string>& hashes,
                 const std::string& what) {
  auto running = Start(hashes, what);
  for (auto& [algorithm, r] : running) r.Update(data);
  Finish(running, hashes, what);
}

void CheckFileHashes(const std::filesystem::path& file,
                     const std::map<std::string, std::string>& hashes, const std::string& what) {
  auto running = Start(hashes, what);
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) Fail(ErrorCode::kNotFound, file.string() + ": " + std::strerror(errno));
  std::vector<char> buf(1 << 20);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      Fail(ErrorCode::kInternal, file.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    for (auto& [algorithm, r] : running) r.Update(std::string_view(buf.data(), n));
  }
  ::close(fd);
  Finish(running, hashes, what);
}

}  // namespace outpost::tuf
