#include <gtest/gtest.h>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/names.h"
#include "serving/model_config.h"

namespace outpost {
namespace {

TEST(Names, ModelNamesAreSafe) {
  EXPECT_TRUE(IsValidModelName("silero_vad"));
  EXPECT_TRUE(IsValidModelName("node.test_abs-2"));
  for (const char* bad : {"", ".", "..", "../x", "a/b", "a b", "_x", "-x", "a..b", "a\\b"}) {
    EXPECT_FALSE(IsValidModelName(bad)) << bad;
  }
  EXPECT_FALSE(IsValidModelName(std::string(129, 'a')));
}

TEST(Names, VersionsOrderNumerically) {
  EXPECT_LT(CompareVersions("9", "10"), 0);
  EXPECT_LT(CompareVersions("1.9.3", "1.10.0"), 0);
  EXPECT_GT(CompareVersions("1.0.0", "1.0.0-rc1"), 0);
  EXPECT_LT(CompareVersions("1.0.0-rc1", "1.0.0"), 0);
  EXPECT_LT(CompareVersions("1.0", "1.0.1"), 0);
  EXPECT_EQ(CompareVersions("2", "2"), 0);
}

TEST(AtomicFile, ReplacesWhole) {
  auto dir = std::filesystem::temp_directory_path() / "outpost-atomic-test";
  std::filesystem::create_directories(dir);
  WriteFileAtomically(dir / "f", "one");
  WriteFileAtomically(dir / "f", "two");
  EXPECT_EQ(ReadFile(dir / "f"), "two");
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "f");
  std::filesystem::remove_all(dir);
}

std::vector<TensorSpec> In() { return {{"x", DataType::kFp32, {-1, 3}}}; }
std::vector<TensorSpec> Out() { return {{"y", DataType::kFp32, {-1, 3}}}; }

std::string ConfigError(const std::string& manifest) {
  try {
    BuildModelConfig("m", "1", "m.onnx", In(), Out(), ParseManifest(manifest));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, ManifestOverridesWithinTheModel) {
  auto c =
      BuildModelConfig("m", "1", "m.onnx", In(), Out(),
                       ParseManifest(R"({"inputs":[{"name":"x","shape":[-1,3]}],"max_batch_size":8,
                              "dynamic_batching":{"max_queue_delay_us":100},"instance_count":2})"));
  EXPECT_EQ(c.max_batch_size, 8);
  EXPECT_TRUE(c.dynamic_batching);
  EXPECT_EQ(c.max_queue_delay.count(), 100);
  EXPECT_EQ(c.instance_count, 2);
  auto fixed = BuildModelConfig("m", "1", "m.onnx", In(), Out(),
                                ParseManifest(R"({"inputs":[{"name":"x","shape":[4,3]}]})"));
  EXPECT_EQ(fixed.inputs[0].shape, (Shape{4, 3}));
}

TEST(ModelConfig, ContradictionsAreRefusedByName) {
  EXPECT_NE(
      ConfigError(R"({"inputs":[{"name":"z"}]})").find("input 'z' that the model does not have"),
      std::string::npos);
  EXPECT_NE(ConfigError(R"({"inputs":[{"name":"x","datatype":"INT8"}]})")
                .find("INT8 in the manifest but FP32"),
            std::string::npos);
  EXPECT_NE(ConfigError(R"({"inputs":[{"name":"x","shape":[-1,4]}]})")
                .find("contradicts the model's [-1,3]"),
            std::string::npos);
  EXPECT_NE(ConfigError(R"({"bogus":1})").find("unknown field 'bogus'"), std::string::npos);
  EXPECT_NE(ConfigError(R"({"dynamic_batching":{}})").find("needs max_batch_size"),
            std::string::npos);
  EXPECT_NE(ConfigError(R"({"name":"other"})").find("differs from the directory"),
            std::string::npos);
  EXPECT_NE(ConfigError(R"({"model_file":"../x.onnx"})").find("plain file name"),
            std::string::npos);
  EXPECT_NE(
      ConfigError(R"({"instance_count":0})").find("'instance_count' must be an integer in 1..64"),
      std::string::npos);
  EXPECT_NE(ConfigError("[1]").find("expected a JSON object"), std::string::npos);
}

TEST(ModelConfig, BatchingNeedsAVariableFirstDimension) {
  try {
    BuildModelConfig("m", "1", "m.onnx", {{"x", DataType::kFp32, {2, 3}}}, Out(),
                     ParseManifest(R"({"max_batch_size":4})"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("variable first dimension"), std::string::npos);
  }
}

}  // namespace
}  // namespace outpost
