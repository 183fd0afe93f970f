#pragma once

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

}  // namespace outpost
