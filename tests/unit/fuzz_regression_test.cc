// Every input the fuzzer kept (fuzz/corpus/http_codec, crashes it found included) is replayed
// here: each must decode or be refused with Error(kInvalidArgument), never crash.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "chat_fuzz_input.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "fleet_fuzz_input.h"
#include "monitoring_fuzz_input.h"
#include "package/package.h"
#include "redaction_fuzz_input.h"
#include "serving/http_codec.h"
#include "tuf_fuzz_input.h"

namespace outpost {
namespace {

TEST(FuzzRegression, HttpCodecCorpus) {
  size_t files = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(OUTPOST_FUZZ_CORPUS) + "/http_codec")) {
    std::string data = ReadFile(e.path());
    ++files;
    // The fuzz target's framing: first byte picks JSON-only or binary with a header length.
    for (std::optional<size_t> hl :
         {std::optional<size_t>{}, std::optional<size_t>{data.size() / 2}}) {
      try {
        auto req = DecodeHttpInferRequest(data, hl);
        InferResponse res{"m", "1", req.id, req.inputs};
        EncodeHttpInferResponse(res, req);
      } catch (const Error& err) {
        EXPECT_EQ(err.code(), ErrorCode::kInvalidArgument) << e.path() << ": " << err.what();
      }
    }
  }
  EXPECT_GT(files, 0u);
}

TEST(FuzzRegression, PackageCorpus) {
  const TrustPolicy trust = ParseTrustPolicy(
      R"({"threshold": 1, "keys": [{"public": "2ae1b8d4c1a1f1e0a0d4b6c1a5f7e3d2c4b6a8f0e2d4c6b8a0f2e4d6c8b0a2f4"}]})");
  size_t files = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(OUTPOST_FUZZ_CORPUS) + "/package")) {
    std::string data = ReadFile(e.path());
    ++files;
    for (const TrustPolicy* t : {&trust, static_cast<const TrustPolicy*>(nullptr)}) {
      try {
        PackageLimits limits;
        limits.max_file_bytes = 1 << 20;
        VerifyPackage(ReadFromMemory(data), t, limits);
      } catch (const Error& err) {
        EXPECT_TRUE(err.code() == ErrorCode::kInvalidArgument ||
                    err.code() == ErrorCode::kPermissionDenied)
            << e.path() << ": " << err.what();
      }
    }
  }
  EXPECT_GT(files, 0u);
}

// Runs a shared fuzz harness (which traps on a broken property) over every file of a corpus.
void ReplayCorpus(const char* target, void (*run)(const uint8_t*, size_t)) {
  size_t files = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(OUTPOST_FUZZ_CORPUS) + "/" + target)) {
    std::string data = ReadFile(e.path());
    ++files;
    run(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  }
  EXPECT_GT(files, 0u);
}

// Prompt texts: redaction round-trips exactly.
TEST(FuzzRegression, RedactionCorpus) {
  ReplayCorpus("redaction", outpost_fuzz::RunRedactionInput);
}

// TUF metadata: parsed and refused (or accepted), never an error code other than
// invalid/denied, never a crash.
TEST(FuzzRegression, TufCorpus) { ReplayCorpus("tuf", outpost_fuzz::RunTufInput); }

TEST(FuzzRegression, ChatCorpus) { ReplayCorpus("chat", outpost_fuzz::RunChatInput); }

TEST(FuzzRegression, FleetCorpus) { ReplayCorpus("fleet", outpost_fuzz::RunFleetInput); }

TEST(FuzzRegression, MonitoringCorpus) {
  ReplayCorpus("monitoring", outpost_fuzz::RunMonitoringInput);
}

}  // namespace
}  // namespace outpost
