#include <sys/stat.h>

#include <cstring>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "runtime/model.h"
#include "runtime/ort_format_cache.h"
#include "temp_dir.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = OUTPOST_TEST_FIXTURES;
const std::string kKey(32, 'k');

// y = relu(x W + b), 64 wide: weights that ORT pre-packs and reads in place.
const fs::path kDense = kFixtures + "/dense/1/model.onnx";

RuntimeOptions Cached(const fs::path& dir, std::string key = kKey) {
  RuntimeOptions options;
  options.ort_format = {dir, std::move(key)};
  return options;
}

std::vector<Tensor> RunDense(Model& model) {
  std::string x(2 * 64 * 4, '\0');
  for (size_t i = 0; i < 2 * 64; ++i) {
    float v = static_cast<float>(i % 13) - 6.0f;
    std::memcpy(x.data() + 4 * i, &v, 4);
  }
  return model.Run({Tensor{"x", DataType::kFp32, {2, 64}, x}}, {});
}

struct stat StatOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st;
}

TEST(OrtFormatCache, AModelLoadedFromItsCopyAnswersAsTheOnnxModelDoes) {
  TempDir dir;
  auto plain = LoadOnnxModel(kDense, {});
  auto cached = LoadOnnxModel(kDense, Cached(dir.path()));
  ASSERT_TRUE(fs::is_regular_file(dir.path() / "model.onnx.ort"));
  auto record = nlohmann::json::parse(ReadFile(dir.path() / "model.onnx.ort.json"));
  EXPECT_EQ(record["onnxruntime"], OnnxRuntimeVersion());
  EXPECT_EQ(record["hmac"].get<std::string>().size(), 64u);
  EXPECT_EQ(StatOf(dir.path() / "model.onnx.ort.json").st_mode & 0777, 0600u);
  EXPECT_EQ(StatOf(dir.path()).st_mode & 0777, 0700u);
  EXPECT_EQ(cached->inputs().size(), plain->inputs().size());
  EXPECT_EQ(cached->placement().provider, "CPUExecutionProvider");
  // The run after the mapping's pages were dropped reads the weights back from the file.
  EXPECT_EQ(RunDense(*cached)[0].data, RunDense(*plain)[0].data);
}

TEST(OrtFormatCache, ACopyThatVerifiesIsUsedAsItIs) {
  TempDir dir;
  LoadOnnxModel(kDense, Cached(dir.path()));
  auto first = StatOf(dir.path() / "model.onnx.ort");
  bool saved = false;
  auto mapped = DerivedOrtModel({dir.path(), kKey}, "model.onnx", ReadFile(kDense), "dense",
                                OnnxRuntimeVersion(), [&](const fs::path&) { saved = true; });
  ASSERT_NE(mapped, nullptr);
  EXPECT_FALSE(saved);
  EXPECT_EQ(StatOf(dir.path() / "model.onnx.ort").st_ino, first.st_ino);
  EXPECT_EQ(mapped->bytes(), ReadFile(dir.path() / "model.onnx.ort"));
}

TEST(OrtFormatCache, ATamperedCopyIsMadeAgainAndTheModelStillAnswers) {
  TempDir dir;
  auto expected = RunDense(*LoadOnnxModel(kDense, {}));
  LoadOnnxModel(kDense, Cached(dir.path()));
  const fs::path copy = dir.path() / "model.onnx.ort";
  std::string bytes = ReadFile(copy);
  // A weight changed in place, as an attacker with write access to the repository would.
  std::string tampered = bytes;
  tampered[tampered.size() / 2] ^= 0x40;
  WriteFileAtomically(copy, tampered);
  auto model = LoadOnnxModel(kDense, Cached(dir.path()));
  EXPECT_EQ(ReadFile(copy), bytes);
  EXPECT_EQ(RunDense(*model)[0].data, expected[0].data);
}

TEST(OrtFormatCache, AHostileRecordIsMadeAgain) {
  TempDir dir;
  auto expected = RunDense(*LoadOnnxModel(kDense, {}));
  LoadOnnxModel(kDense, Cached(dir.path()));
  const fs::path record = dir.path() / "model.onnx.ort.json";
  const std::string good = ReadFile(record);
  for (const std::string& bad :
       {std::string(100000, '[') + std::string(100000, ']'), std::string("{\"source_sha256\": 7}"),
        std::string("not json"), std::string(2u << 20, ' ')}) {
    WriteFileAtomically(record, bad, 0600);
    auto model = LoadOnnxModel(kDense, Cached(dir.path()));
    EXPECT_EQ(RunDense(*model)[0].data, expected[0].data);
    EXPECT_EQ(ReadFile(record), good);
  }
}

TEST(OrtFormatCache, AnotherKeyOrAnotherSourceMakesItAgain) {
  TempDir dir;
  LoadOnnxModel(kDense, Cached(dir.path()));
  auto first = StatOf(dir.path() / "model.onnx.ort");
  LoadOnnxModel(kDense, Cached(dir.path(), std::string(32, 'x')));
  auto second = StatOf(dir.path() / "model.onnx.ort");
  EXPECT_NE(second.st_ino, first.st_ino);
  // The same name, another model: the record's source hash no longer matches.
  auto other =
      LoadOnnxModel(kFixtures + "/identity/1/model.onnx", Cached(dir.path(), std::string(32, 'x')));
  EXPECT_NE(StatOf(dir.path() / "model.onnx.ort").st_ino, second.st_ino);
  EXPECT_EQ(other->inputs().size(), 13u);
}

TEST(OrtFormatCache, AModelThatCannotBeSavedIsLoadedAsOnnxAndNotTriedAgain) {
  TempDir dir;
  int saves = 0;
  auto refuse = [&](const fs::path&) {
    ++saves;
    throw std::runtime_error("no ORT format for this one");
  };
  const std::string source = ReadFile(kDense);
  EXPECT_EQ(DerivedOrtModel({dir.path(), kKey}, "m.onnx", source, "m", "1.0", refuse), nullptr);
  EXPECT_EQ(DerivedOrtModel({dir.path(), kKey}, "m.onnx", source, "m", "1.0", refuse), nullptr);
  EXPECT_EQ(saves, 1);
  auto record = nlohmann::json::parse(ReadFile(dir.path() / "m.onnx.ort.json"));
  EXPECT_EQ(record["unsupported"], "no ORT format for this one");
  EXPECT_FALSE(fs::exists(dir.path() / "m.onnx.ort"));
  // Another ORT version tries again.
  EXPECT_EQ(DerivedOrtModel({dir.path(), kKey}, "m.onnx", source, "m", "2.0", refuse), nullptr);
  EXPECT_EQ(saves, 2);
}

TEST(OrtFormatCache, ACacheThatCannotBeWrittenLeavesTheModelAsOnnx) {
  TempDir dir;
  WriteFileAtomically(dir.path() / "file", "not a directory");
  auto model = LoadOnnxModel(kDense, Cached(dir.path() / "file" / "derived"));
  EXPECT_EQ(RunDense(*model)[0].data, RunDense(*LoadOnnxModel(kDense, {}))[0].data);
}

TEST(OrtFormatCache, TheKeyIsMadeOncePrivateAndRefusedWhenOthersCanReadIt) {
  TempDir dir;
  const fs::path file = dir.path() / "key";
  std::string key = LoadOrCreateDerivationKey(file);
  EXPECT_EQ(key.size(), 32u);
  EXPECT_EQ(StatOf(file).st_mode & 0777, 0600u);
  EXPECT_EQ(LoadOrCreateDerivationKey(file), key);
  EXPECT_NE(LoadOrCreateDerivationKey(dir.path() / "another"), key);
  fs::permissions(file, fs::perms::group_read, fs::perm_options::add);
  try {
    LoadOrCreateDerivationKey(file);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition);
  }
  fs::create_symlink(dir.path() / "another", dir.path() / "link");
  EXPECT_THROW(LoadOrCreateDerivationKey(dir.path() / "link"), Error);
}

}  // namespace
}  // namespace outpost
