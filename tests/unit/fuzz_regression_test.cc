// Every input the fuzzers kept (fuzz/corpus/<target>, the crashes they found included) is
// replayed here through the same harness the fuzz target runs (fuzz/*_fuzz_input.h), with its
// properties: refused only with the errors it may give, never nested past its entry point's
// limit, never a crash.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "auth_fuzz_input.h"
#include "chat_fuzz_input.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "fleet_fuzz_input.h"
#include "http_codec_fuzz_input.h"
#include "http_request_fuzz_input.h"
#include "monitoring_fuzz_input.h"
#include "package_fuzz_input.h"
#include "redaction_fuzz_input.h"
#include "tflite_fuzz_input.h"
#include "tuf_fuzz_input.h"

namespace outpost {
namespace {

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

// KServe v2 bodies: decoded or refused with kInvalidArgument, never nested past the limit.
TEST(FuzzRegression, HttpCodecCorpus) {
  ReplayCorpus("http_codec", outpost_fuzz::RunHttpCodecInput);
}

// Package bytes through the verifier, the manifest parser and the trust-file parser alike.
TEST(FuzzRegression, PackageCorpus) { ReplayCorpus("package", outpost_fuzz::RunPackageInput); }

// HTTP/1.1 request heads and chunked bodies, whole and a byte at a time.
TEST(FuzzRegression, HttpRequestCorpus) {
  ReplayCorpus("http_request", outpost_fuzz::RunHttpRequestInput);
}

// TensorFlow Lite files: imported, or refused with kInvalidArgument.
TEST(FuzzRegression, TfliteCorpus) { ReplayCorpus("tflite", outpost_fuzz::RunTfliteInput); }

// Authorization and X-Api-Key headers: no crash, and nothing admitted that nothing grants.
TEST(FuzzRegression, AuthCorpus) { ReplayCorpus("auth", outpost_fuzz::RunAuthInput); }

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
