#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "runtime/capabilities.h"
#include "runtime/model.h"

namespace outpost {
namespace {

const std::string kFixtures = OUTPOST_TEST_FIXTURES;

TEST(OrtModel, ReadsSchemaAndRunsEveryType) {
  auto model = LoadOnnxModel(kFixtures + "/identity/1/model.onnx", {});
  ASSERT_EQ(model->inputs().size(), 13u);
  EXPECT_EQ(model->inputs()[0].name, "in_BOOL");
  EXPECT_EQ(model->inputs()[0].shape, (Shape{-1}));
  std::vector<Tensor> inputs;
  for (const auto& spec : model->inputs()) {
    Tensor t{spec.name, spec.dtype, {2}, {}};
    if (spec.dtype == DataType::kBytes) {
      AppendBytesElement(t.data, "hello");
      AppendBytesElement(t.data, "");
    } else {
      for (size_t i = 0; i < 2 * ElementSize(spec.dtype); ++i)
        t.data.push_back(static_cast<char>(i % 2));
    }
    inputs.push_back(t);
  }
  auto out = model->Run(inputs, {});
  ASSERT_EQ(out.size(), inputs.size());
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].dtype, inputs[i].dtype) << out[i].name;
    EXPECT_EQ(out[i].shape, inputs[i].shape) << out[i].name;
    EXPECT_EQ(out[i].data, inputs[i].data) << out[i].name;
  }
  auto one = model->Run(inputs, {"out_FP32"});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].name, "out_FP32");
}

TEST(OrtModel, ErrorsAreTyped) {
  try {
    LoadOnnxModel(kFixtures + "/nope.onnx", {});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("nope.onnx"), std::string::npos);
  }
  auto model = LoadOnnxModel(kFixtures + "/add_mul/1/model.onnx", {});
  Tensor a{"a", DataType::kFp32, {1, 4}, std::string(16, '\0')};
  Tensor b{"b", DataType::kFp32, {1, 3}, std::string(12, '\0')};
  try {
    model->Run({a, b}, {});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
  }
}

TEST(Capabilities, DescribeThisMachine) {
  auto caps = DiscoverCapabilities();
  EXPECT_GT(caps.logical_cores, 0u);
  EXPECT_GT(caps.memory_total_bytes, 0u);
  EXPECT_FALSE(caps.architecture.empty());
  EXPECT_EQ(caps.onnxruntime_version.substr(0, 2), "1.");
  EXPECT_NE(std::find(caps.execution_providers.begin(), caps.execution_providers.end(),
                      "CPUExecutionProvider"),
            caps.execution_providers.end());
}

}  // namespace
}  // namespace outpost
