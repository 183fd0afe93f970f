// core/json_input: untrusted JSON within limits, refused with the limit named.
#include "core/json_input.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"

namespace outpost {
namespace {

std::string Refusal(std::string_view text, const JsonLimits& limits, ErrorCode code) {
  try {
    ParseJson(text, limits, "body");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "accepted: " << text.substr(0, 80);
  return "";
}

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(JsonInput, ParsesWhatFitsTheLimits) {
  JsonLimits l;
  auto j = ParseJson(R"({"a": [1, 2.5, "x", true, null, {"b": {}}]})", l, "body");
  EXPECT_EQ(j["a"][1], 2.5);
  EXPECT_EQ(JsonDepth(j), 4);
  EXPECT_EQ(JsonDepth(ParseJson("3", l, "")), 0);
  EXPECT_EQ(JsonDepth(ParseJson(Nested(64), l, "")), 64);
}

TEST(JsonInput, DeepNestingIsRefusedWithoutRecursion) {
  JsonLimits l;
  // 10^5 deep crashed three programs when a whole document was copied or dumped.
  EXPECT_NE(Refusal(Nested(100000), l, ErrorCode::kInvalidArgument)
                .find("body: nested deeper than 64 levels"),
            std::string::npos);
  EXPECT_NE(Refusal(Nested(65), l, ErrorCode::kInvalidArgument).find("nested deeper"),
            std::string::npos);
  std::string objects;
  for (int i = 0; i < 70; ++i) objects += "{\"a\":";
  objects += "1" + std::string(70, '}');
  EXPECT_NE(Refusal(objects, l, ErrorCode::kInvalidArgument).find("nested deeper"),
            std::string::npos);
}

TEST(JsonInput, SizeElementsAndStringsAreBounded) {
  JsonLimits l{100, 8, 5, 4};
  EXPECT_NE(Refusal(std::string(101, ' '), l, ErrorCode::kPayloadTooLarge).find("limit of 100"),
            std::string::npos);
  EXPECT_NE(Refusal("[1,2,3,4,5]", l, ErrorCode::kInvalidArgument).find("more than 5 values"),
            std::string::npos);
  EXPECT_NE(Refusal(R"(["abcde"])", l, ErrorCode::kInvalidArgument).find("longer than 4"),
            std::string::npos);
  EXPECT_NE(Refusal(R"({"abcde": 1})", l, ErrorCode::kInvalidArgument).find("longer than 4"),
            std::string::npos);
  EXPECT_NO_THROW(ParseJson("[1,2,3,4]", l, ""));
}

TEST(JsonInput, MalformedTextAndNulBytesAreRefused) {
  JsonLimits l;
  EXPECT_NE(Refusal("{\"a\": }", l, ErrorCode::kInvalidArgument).find("not valid JSON at byte"),
            std::string::npos);
  EXPECT_NE(Refusal("", l, ErrorCode::kInvalidArgument).find("not valid JSON"), std::string::npos);
  // nlohmann alone would read "{}\0..." as "{}" and ignore the rest.
  EXPECT_NE(
      Refusal(std::string("{}\0{\"x\"", 7), l, ErrorCode::kInvalidArgument).find("a NUL byte"),
      std::string::npos);
  EXPECT_NE(Refusal("{} {}", l, ErrorCode::kInvalidArgument).find("not valid JSON"),
            std::string::npos);
}

}  // namespace
}  // namespace outpost
