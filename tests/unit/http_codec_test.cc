#include "serving/http_codec.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "serving/half.h"

namespace outpost {
namespace {

std::string ErrorFrom(std::string_view body, std::optional<size_t> header_length,
                      JsonBodyParser parser) {
  try {
    DecodeHttpInferRequest(body, header_length, nullptr, parser);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "";
}

// Both JSON parsers refuse the body; past the JSON syntax (where each names its own finding),
// with the same message.
std::string ErrorOf(std::string_view body, std::optional<size_t> header_length = std::nullopt) {
  const std::string indexed = ErrorFrom(body, header_length, JsonBodyParser::kIndexed);
  const std::string streamed = ErrorFrom(body, header_length, JsonBodyParser::kStreaming);
  EXPECT_EQ(indexed.empty(), streamed.empty()) << body;
  if (indexed.find("not valid JSON") == std::string::npos) {
    EXPECT_EQ(indexed, streamed) << body;
  }
  return indexed;
}

TEST(HttpCodec, DecodesJsonTensorsOfEveryType) {
  auto req = DecodeHttpInferRequest(R"({"id":"x","inputs":[
    {"name":"f","datatype":"FP32","shape":[2,2],"data":[[1.5,-2],[3,4]]},
    {"name":"i","datatype":"INT8","shape":[2],"data":[-128,127]},
    {"name":"u","datatype":"UINT64","shape":[1],"data":[18446744073709551615]},
    {"name":"b","datatype":"BOOL","shape":[3],"data":[true,false,true]},
    {"name":"h","datatype":"FP16","shape":[1],"data":[1.5]},
    {"name":"s","datatype":"BYTES","shape":[2],"data":["ab",""]}],
    "outputs":[{"name":"o","parameters":{"binary_data":true}}]})",
                                    std::nullopt);
  EXPECT_EQ(req.id, "x");
  ASSERT_EQ(req.inputs.size(), 6u);
  float f[4];
  std::memcpy(f, req.inputs[0].data.data(), 16);
  EXPECT_EQ(f[0], 1.5f);
  EXPECT_EQ(f[1], -2.f);
  EXPECT_EQ(f[3], 4.f);
  EXPECT_EQ(req.inputs[1].data, std::string("\x80\x7f", 2));
  EXPECT_EQ(req.inputs[2].data, std::string(8, '\xff'));
  EXPECT_EQ(req.inputs[3].data, std::string("\x01\x00\x01", 3));
  uint16_t h;
  std::memcpy(&h, req.inputs[4].data.data(), 2);
  EXPECT_EQ(HalfToFloat(h), 1.5f);
  EXPECT_EQ(req.inputs[5].data, std::string("\x02\0\0\0ab\0\0\0\0", 10));
  ASSERT_EQ(req.outputs.size(), 1u);
  EXPECT_TRUE(req.outputs[0].binary);
}

TEST(HttpCodec, DecodesBinaryExtension) {
  std::string header =
      R"({"inputs":[{"name":"a","datatype":"INT32","shape":[2],"parameters":{"binary_data_size":8}},
    {"name":"b","datatype":"INT32","shape":[1],"data":[5]}]})";
  std::string body = header + std::string("\x01\0\0\0\x02\0\0\0", 8);
  auto req = DecodeHttpInferRequest(body, header.size());
  EXPECT_EQ(req.inputs[0].data, std::string("\x01\0\0\0\x02\0\0\0", 8));
  EXPECT_EQ(req.inputs[1].data, std::string("\x05\0\0\0", 4));
}

TEST(HttpCodec, BothJsonParsersDecodeAlike) {
  for (
      std::string_view body : {
          // data before datatype (nlohmann's dump sorts keys): the second pass converts it
          R"({"inputs":[{"data":[1,2.5],"datatype":"FP64","name":"a","shape":[2]}]})",
          // escaped keys are the keys they spell
          R"({"inputs":[{"name":"a","dat\u0061type":"INT64","shape":[2],"d\u0061ta":[-0,9]}]})",
          // integers past 64 bits and exponents read as doubles
          R"({"inputs":[{"name":"a","datatype":"FP32","shape":[4],"data":[1e2,-1E-2,184467440737095516150,-92233720368547758090]}]})",
          // unknown keys and nested parameters are walked past
          R"({"x":{"y":[{"z":null}]},"parameters":{"p":[1,{"q":true}]},"inputs":[
               {"name":"s","datatype":"BYTES","shape":[1],"data":["\u00e9\n"],"parameters":{}}]})",
          "  {\"inputs\":[]}\r\n\t ",
      }) {
    SCOPED_TRACE(std::string(body));
    auto indexed = DecodeHttpInferRequest(body, std::nullopt, nullptr, JsonBodyParser::kIndexed);
    auto streamed = DecodeHttpInferRequest(body, std::nullopt, nullptr, JsonBodyParser::kStreaming);
    ASSERT_EQ(indexed.inputs.size(), streamed.inputs.size());
    for (size_t i = 0; i < indexed.inputs.size(); ++i) {
      EXPECT_EQ(indexed.inputs[i].name, streamed.inputs[i].name);
      EXPECT_EQ(indexed.inputs[i].dtype, streamed.inputs[i].dtype);
      EXPECT_EQ(indexed.inputs[i].shape, streamed.inputs[i].shape);
      EXPECT_EQ(indexed.inputs[i].data, streamed.inputs[i].data);
    }
  }
  double d[2];
  auto req = DecodeHttpInferRequest(
      R"({"inputs":[{"data":[1,2.5],"datatype":"FP64","name":"a","shape":[2]}]})", std::nullopt);
  std::memcpy(d, req.inputs[0].data.data(), 16);
  EXPECT_EQ(d[1], 2.5);
  // What follows the root, and a root that is not an object, are refused by both.
  for (std::string_view body : {R"({"inputs":[]} {})", R"({"inputs":[]}x)", R"([1])", "1", "",
                                "{\"inputs\":[{\"name\":\"\xff\"}]}"}) {
    SCOPED_TRACE(std::string(body));
    EXPECT_FALSE(ErrorOf(body).empty());
  }
}

TEST(HttpCodec, RefusesBadInputPrecisely) {
  EXPECT_NE(ErrorOf("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[{"name":"a","datatype":"FP32","shape":[3],"data":[1,2]}]})")
                .find("needs 3 elements, 'data' has 2"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1],"data":[1,2]}]})")
                .find("more elements than the shape"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[{"name":"a","datatype":"UINT8","shape":[1],"data":[-1]}]})")
                .find("out of range"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[{"name":"a","datatype":"INT32","shape":[1],"data":[1.5]}]})")
                .find("expected an integer"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[{"name":"a","datatype":"BOOL","shape":[1],"data":[1]}]})")
                .find("expected true or false"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(
          R"({"inputs":[{"name":"a","datatype":"FP32","shape":[4294967296,4294967296,4294967296],"data":[]}]})")
          .find("too large"),
      std::string::npos);
  std::string nested = R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1],"data":)" +
                       std::string(40, '[') + "1" + std::string(40, ']') + "}]}";
  EXPECT_NE(ErrorOf(nested).find("nested too deeply"), std::string::npos);
  std::string header =
      R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]})";
  EXPECT_NE(ErrorOf(header + "abc", header.size()).find("runs past the end"), std::string::npos);
  EXPECT_NE(ErrorOf(header + "abcde", header.size()).find("1 bytes after the JSON header"),
            std::string::npos);
  EXPECT_NE(ErrorOf(header + "abcd", header.size() + 10).find("exceeds the body"),
            std::string::npos);
  EXPECT_NE(ErrorOf(header).find("without an Inference-Header-Content-Length"), std::string::npos);
}

TEST(HttpCodec, EncodesJsonAndBinaryOutputs) {
  InferResponse res{"m", "1", "id7", {}};
  Tensor f{"f", DataType::kFp32, {2}, {}};
  float v[2] = {0.1f, -3.f};
  f.data.assign(reinterpret_cast<char*>(v), 8);
  Tensor s{"s", DataType::kBytes, {1}, {}};
  AppendBytesElement(s.data, "q\"x");
  res.outputs = {f, s};
  InferRequest req;
  auto json_only = EncodeHttpInferResponse(res, req);
  EXPECT_FALSE(json_only.header_length);
  EXPECT_EQ(
      json_only.body,
      R"({"model_name":"m","model_version":"1","id":"id7","outputs":[{"name":"f","datatype":"FP32","shape":[2],"data":[0.1,-3]},)"
      R"({"name":"s","datatype":"BYTES","shape":[1],"data":["q\"x"]}]})");
  req.outputs = {{"f", true}};
  auto mixed = EncodeHttpInferResponse(res, req);
  ASSERT_TRUE(mixed.header_length);
  EXPECT_EQ(mixed.body.substr(*mixed.header_length), f.data);
  EXPECT_NE(mixed.body.find(R"("parameters":{"binary_data_size":8})"), std::string::npos);
}

TEST(HttpCodec, DecodesSharedMemoryReferences) {
  auto req = DecodeHttpInferRequest(R"({"inputs":[
    {"name":"a","datatype":"UINT8","shape":[2,3],"parameters":{"shared_memory_region":"cam",
      "shared_memory_byte_size":6,"shared_memory_offset":64}},
    {"name":"b","datatype":"FP32","shape":[1],"data":[2]}],
    "outputs":[{"name":"y","parameters":{"shared_memory_region":"out","shared_memory_byte_size":12}},
               {"name":"z"}]})",
                                    std::nullopt);
  ASSERT_EQ(req.inputs.size(), 2u);
  ASSERT_EQ(req.input_regions.size(), 2u);
  ASSERT_TRUE(req.input_regions[0]);
  EXPECT_EQ(req.input_regions[0]->region, "cam");
  EXPECT_EQ(req.input_regions[0]->offset, 64u);
  EXPECT_EQ(req.input_regions[0]->byte_size, 6u);
  EXPECT_TRUE(req.inputs[0].data.empty());  // read from the region later
  EXPECT_FALSE(req.input_regions[1]);
  EXPECT_EQ(req.inputs[1].data.size(), 4u);
  ASSERT_EQ(req.outputs.size(), 2u);
  ASSERT_TRUE(req.outputs[0].shared_memory);
  EXPECT_EQ(req.outputs[0].shared_memory->region, "out");
  EXPECT_EQ(req.outputs[0].shared_memory->offset, 0u);
  EXPECT_FALSE(req.outputs[1].shared_memory);

  const std::string in = R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1],"parameters":)";
  EXPECT_NE(
      ErrorOf(in + R"({"shared_memory_region":"r"}}]})").find("without shared_memory_byte_size"),
      std::string::npos);
  EXPECT_NE(
      ErrorOf(in + R"({"shared_memory_byte_size":4}}]})").find("without shared_memory_region"),
      std::string::npos);
  EXPECT_NE(ErrorOf(in + R"({"shared_memory_region":1,"shared_memory_byte_size":4}}]})")
                .find("must be a string"),
            std::string::npos);
  EXPECT_NE(ErrorOf(in + R"({"shared_memory_region":"r","shared_memory_byte_size":-4}}]})")
                .find("non-negative"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(in + R"({"shared_memory_region":"r","shared_memory_byte_size":4},"data":[1]}]})")
          .find("has shared_memory_region and also 'data'"),
      std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":true,)"
                    R"("shared_memory_region":"r","shared_memory_byte_size":4}}]})")
                .find("has shared_memory_region and also binary_data"),
            std::string::npos);

  // An output written to a region is answered with its place, not its data.
  InferResponse res{"m", "1", "", {}};
  Tensor y{"y", DataType::kFp32, {3}, std::string(12, '\0')};
  res.outputs = {y};
  auto encoded = EncodeHttpInferResponse(res, req);
  EXPECT_FALSE(encoded.header_length);
  EXPECT_EQ(
      encoded.body,
      R"({"model_name":"m","model_version":"1","outputs":[{"name":"y","datatype":"FP32",)"
      R"("shape":[3],"parameters":{"shared_memory_region":"out","shared_memory_byte_size":12}}]})");
}

TEST(Half, RoundTripsAndRounds) {
  for (float x : {0.f, -0.f, 1.f, -2.5f, 65504.f, 6.1035156e-05f, 5.9604645e-08f})
    EXPECT_EQ(HalfToFloat(FloatToHalf(x)), x) << x;
  EXPECT_EQ(FloatToHalf(1e10f), 0x7c00);
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(-2.f)), -2.f);
}

}  // namespace
}  // namespace outpost
