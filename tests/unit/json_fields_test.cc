// core/json_fields: typed reads that name the field and say what it must be.
#include "core/json_fields.h"

#include <gtest/gtest.h>

namespace outpost {
namespace {

using json = nlohmann::json;

std::string Refusal(const std::function<void()>& read, std::string* field = nullptr) {
  try {
    read();
  } catch (const FieldError& e) {
    if (field) *field = e.field();
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "accepted";
  return "";
}

TEST(JsonFields, ReadsTypedValuesWithFallbacks) {
  const json j = json::parse(
      R"({"s": "x", "b": true, "i": 7, "big": 5000000000, "d": 0.5, "list": ["a", "b"],
          "nested": {"k": 1}, "nothing": null})");
  const JsonFields f(j, "config");
  EXPECT_EQ(f.Get("s", "fallback"), "x");
  EXPECT_EQ(f.Get("missing", "fallback"), "fallback");
  EXPECT_EQ(f.Get("nothing", 3), 3);  // null reads as absent
  EXPECT_TRUE(f.Get("b", false));
  EXPECT_EQ(f.Get("i", 0), 7);
  EXPECT_EQ(f.Get("big", int64_t{0}), 5000000000);
  EXPECT_DOUBLE_EQ(f.Get("d", 0.0), 0.5);
  EXPECT_EQ(f.Get("list", std::vector<std::string>{}), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.Object("nested").Get("k", 0), 1);
  EXPECT_EQ(f.Object("absent").Get("k", 9), 9);
  EXPECT_EQ(f.Optional<int>("absent"), std::nullopt);
  EXPECT_TRUE(f.Has("s"));
  EXPECT_FALSE(f.Has("nothing"));
}

TEST(JsonFields, RefusalsNameTheFieldAndWhatItMustBe) {
  const json j = json::parse(
      R"({"s": 1, "i": "7", "big": 5000000000, "neg": -1, "zero": 0, "d": "x",
          "nested": {"k": "v"}, "list": [1]})");
  const JsonFields f(j, "config", "chat_cloud");
  std::string field;
  EXPECT_EQ(Refusal([&] { f.Get("s", ""); }, &field), "config: 'chat_cloud.s' must be a string");
  EXPECT_EQ(field, "chat_cloud.s");
  EXPECT_EQ(Refusal([&] { f.Get("i", 0); }), "config: 'chat_cloud.i' must be an integer");
  EXPECT_NE(Refusal([&] { f.Get("big", 0); }).find("must be an integer in"), std::string::npos);
  EXPECT_EQ(Refusal([&] { f.Get("neg", size_t{0}); }),
            "config: 'chat_cloud.neg' must be a non-negative integer");
  // A non-negative literal arrives as unsigned: the lower bound still holds.
  EXPECT_EQ(Refusal([&] { f.Integer("zero", 5, 1, 64); }),
            "config: 'chat_cloud.zero' must be an integer in 1..64");
  EXPECT_EQ(Refusal([&] { f.Number("d", 0, 0, 1); }),
            "config: 'chat_cloud.d' must be a number in 0..1");
  EXPECT_EQ(Refusal([&] { f.Object("nested").Get("k", 0); }),
            "config: 'chat_cloud.nested.k' must be an integer");
  EXPECT_EQ(Refusal([&] { f.Get("list", std::vector<std::string>{}); }),
            "config: 'chat_cloud.list' must be an array of strings");
  EXPECT_EQ(Refusal([&] { f.Require<std::string>("missing"); }),
            "config: 'chat_cloud.missing' is required");
  EXPECT_EQ(Refusal([&] { f.OnlyKeys({"s", "i"}); }), "config: unknown field 'chat_cloud.big'");
  EXPECT_EQ(Refusal([&] { JsonFields(json::array(), "config"); }),
            "config: expected a JSON object");
  EXPECT_EQ(Refusal([&] { f.Object("s"); }), "config: 'chat_cloud.s' must be an object");
}

}  // namespace
}  // namespace outpost
