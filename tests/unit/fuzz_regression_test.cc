// Every input the fuzzer kept (fuzz/corpus/http_codec, crashes it found included) is replayed
// here: each must decode or be refused with Error(kInvalidArgument), never crash.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "serving/http_codec.h"

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

}  // namespace
}  // namespace outpost
