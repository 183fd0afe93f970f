#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace outpost {

// Streaming SHA-256 (OpenSSL: uses the CPU's SHA extensions where it has them).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  void Update(std::string_view data);
  std::string HexDigest();  // finishes the hash

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string Sha256Hex(std::string_view data);

// Hashes a file in 1 MiB reads, never following a symlink; `size` (if given) receives its
// length. Throws Error(kNotFound) when it cannot be opened, Error(kInternal) on a read error.
std::string Sha256File(const std::string& path, uint64_t* size = nullptr);

}  // namespace outpost
