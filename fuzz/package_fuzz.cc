// libFuzzer target for what reads untrusted package bytes: the ustar reader, the manifest and
// signature parsers and the verifier (against a fixed trust policy), and the trust-file parser.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "package/package.h"

namespace {

const outpost::TrustPolicy& Trust() {
  // A fixed public key (no secret is needed to verify) so that runs are reproducible.
  static const outpost::TrustPolicy trust = outpost::ParseTrustPolicy(
      R"({"threshold": 1, "keys": [{"public": "2ae1b8d4c1a1f1e0a0d4b6c1a5f7e3d2c4b6a8f0e2d4c6b8a0f2e4d6c8b0a2f4"}]})");
  return trust;
}

void Expected(const outpost::Error& e) {
  if (e.code() != outpost::ErrorCode::kInvalidArgument &&
      e.code() != outpost::ErrorCode::kPermissionDenied) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (const outpost::TrustPolicy* trust :
       {&Trust(), static_cast<const outpost::TrustPolicy*>(nullptr)}) {
    try {
      outpost::PackageLimits limits;
      limits.max_file_bytes = 1 << 20;
      outpost::VerifyPackage(outpost::ReadFromMemory(bytes), trust, limits);
    } catch (const outpost::Error& e) {
      Expected(e);
    }
  }
  try {
    outpost::ParsePackageManifestText(bytes);
  } catch (const outpost::Error& e) {
    Expected(e);
  }
  try {
    outpost::ParseTrustPolicy(std::string(bytes));
  } catch (const outpost::Error& e) {
    Expected(e);
  }
  return 0;
}
