// What reads untrusted package bytes: the ustar reader, the manifest and signature parsers and
// the verifier (against a fixed trust policy, and with none), and the trust-file parser. Every
// refusal is Error(kInvalidArgument / kPermissionDenied); a manifest or trust file accepted is
// never nested deeper than the documents' limit. Shared by fuzz/package_fuzz.cc and the corpus
// replay unit test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "json_nesting.h"
#include "package/package.h"

namespace outpost_fuzz {

inline const outpost::TrustPolicy& PackageFuzzTrust() {
  // A fixed public key (no secret is needed to verify) so that runs are reproducible.
  static const outpost::TrustPolicy trust = outpost::ParseTrustPolicy(
      R"({"threshold": 1, "keys": [{"public": "2ae1b8d4c1a1f1e0a0d4b6c1a5f7e3d2c4b6a8f0e2d4c6b8a0f2e4d6c8b0a2f4"}]})");
  return trust;
}

inline void ExpectedPackageError(const outpost::Error& e) {
  if (e.code() != outpost::ErrorCode::kInvalidArgument &&
      e.code() != outpost::ErrorCode::kPermissionDenied &&
      e.code() != outpost::ErrorCode::kPayloadTooLarge) {
    __builtin_trap();
  }
}

inline void RunPackageInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (const outpost::TrustPolicy* trust :
       {&PackageFuzzTrust(), static_cast<const outpost::TrustPolicy*>(nullptr)}) {
    try {
      outpost::PackageLimits limits;
      limits.max_file_bytes = 1 << 20;
      auto report = outpost::VerifyPackage(outpost::ReadFromMemory(bytes), trust, limits);
      CheckAcceptedNesting(report.manifest.Canonical(), 64);
    } catch (const outpost::Error& e) {
      ExpectedPackageError(e);
    }
  }
  try {
    outpost::ParsePackageManifestText(bytes);
    CheckAcceptedNesting(bytes, 64);
  } catch (const outpost::Error& e) {
    ExpectedPackageError(e);
  }
  try {
    outpost::ParseTrustPolicy(std::string(bytes));
    CheckAcceptedNesting(bytes, 64);
  } catch (const outpost::Error& e) {
    ExpectedPackageError(e);
  }
}

}  // namespace outpost_fuzz
