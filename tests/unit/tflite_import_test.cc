// The TensorFlow Lite importer against real models: every openWakeWord .tflite, imported and
// run on ONNX Runtime, agrees with the .onnx twin the project ships beside it; the MediaPipe
// models import and run with the shapes their files declare; damaged files are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "runtime/model.h"
#include "tflite/tflite_importer.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;
const fs::path kModels = OUTPOST_TFLITE_MODELS_DIR;

// Deterministic, speech-like audio at 16 kHz in int16 units (what openWakeWord feeds).
std::vector<float> Audio(size_t n) {
  std::vector<float> out(n);
  uint32_t state = 12345;
  for (size_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    float noise = static_cast<float>(state >> 8) / static_cast<float>(1 << 24) - 0.5f;
    float t = static_cast<float>(i) / 16000.0f;
    out[i] = 6000.0f * std::sin(2 * 3.14159265f * 220.0f * t) * std::sin(3.0f * t) +
             2000.0f * std::sin(2 * 3.14159265f * 1250.0f * t) + 800.0f * noise;
  }
  return out;
}

// Values in the range a stage's input has (the previous stage's outputs).
std::vector<float> Ramp(size_t n, float lo, float hi) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    float x = std::sin(static_cast<float>(i) * 0.37f) * 0.5f + 0.5f;
    out[i] = lo + (hi - lo) * x;
  }
  return out;
}

Tensor Fp32(const std::string& name, Shape shape, const std::vector<float>& v) {
  Tensor t{name, DataType::kFp32, std::move(shape), {}};
  t.data.assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  return t;
}

std::vector<float> Floats(const Tensor& t) {
  std::vector<float> v(t.data.size() / sizeof(float));
  std::memcpy(v.data(), t.data.data(), v.size() * sizeof(float));
  return v;
}

float MaxAbsDiff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape, b.shape);
  auto x = Floats(a), y = Floats(b);
  EXPECT_EQ(x.size(), y.size());
  float worst = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    EXPECT_TRUE(std::isfinite(x[i]));
    worst = std::max(worst, std::fabs(x[i] - y[i]));
  }
  return worst;
}

struct TwinCase {
  std::string name;
  Shape shape;
  std::vector<float> input;
  float tolerance;
};

class OpenWakeWordTwins : public ::testing::TestWithParam<TwinCase> {};

TEST_P(OpenWakeWordTwins, ImportedTfliteAgreesWithOnnx) {
  const auto& c = GetParam();
  auto tflite = LoadModel("tflite", kModels / (c.name + ".tflite"), {});
  auto onnx = LoadModel("onnx", kModels / (c.name + ".onnx"), {});
  EXPECT_EQ(tflite->platform(), "tensorflow_lite");
  ASSERT_EQ(tflite->inputs().size(), 1u);
  ASSERT_EQ(tflite->outputs().size(), onnx->outputs().size());
  auto a = tflite->Run({Fp32(tflite->inputs()[0].name, c.shape, c.input)}, {});
  auto b = onnx->Run({Fp32(onnx->inputs()[0].name, c.shape, c.input)}, {});
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    float diff = MaxAbsDiff(a[k], b[k]);
    std::printf("%s output %zu: max abs difference %.3g\n", c.name.c_str(), k, diff);
    EXPECT_LE(diff, c.tolerance) << c.name;
  }
}

// hey_rhasspy has no twin: its .onnx (32 hidden units) and .tflite (64) are different
// releases of the model, so only the TFLite interpreter can judge the import.
INSTANTIATE_TEST_SUITE_P(
    Models, OpenWakeWordTwins,
    ::testing::Values(TwinCase{"melspectrogram", {1, 16000}, Audio(16000), 2e-3f},
                      TwinCase{"embedding_model", {1, 76, 32, 1}, Ramp(76 * 32, -2, 3), 2e-3f},
                      TwinCase{"hey_jarvis_v0.1", {1, 16, 96}, Ramp(16 * 96, -5, 20), 1e-4f},
                      TwinCase{"hey_mycroft_v0.1", {1, 16, 96}, Ramp(16 * 96, -5, 20), 1e-4f},
                      TwinCase{"alexa_v0.1", {1, 16, 96}, Ramp(16 * 96, -5, 20), 1e-4f},
                      TwinCase{"timer_v0.1", {1, 34, 96}, Ramp(34 * 96, -5, 20), 1e-4f},
                      TwinCase{"weather_v0.1", {1, 22, 96}, Ramp(22 * 96, -5, 20), 1e-4f}),
    [](const auto& p) {
      std::string n = p.param.name;
      for (char& ch : n)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

// The MediaPipe models have no ONNX twin: they import, run, and give the shapes and the
// value ranges their files promise (the TFLite interpreter comparison is an integration test).
TEST(TfliteImport, MediaPipeModelsRun) {
  struct Case {
    std::string file;
    Shape input;
  };
  for (const auto& c : {Case{"face_detection_short_range.tflite", {1, 128, 128, 3}},
                        Case{"face_detection_full_range.tflite", {1, 192, 192, 3}},
                        Case{"face_detection_full_range_sparse.tflite", {1, 192, 192, 3}},
                        Case{"selfie_segmentation.tflite", {1, 256, 256, 3}},
                        Case{"selfie_segmentation_landscape.tflite", {1, 144, 256, 3}}}) {
    SCOPED_TRACE(c.file);
    auto model = LoadModel("tflite", kModels / c.file, {});
    ASSERT_EQ(model->inputs().size(), 1u);
    EXPECT_EQ(model->inputs()[0].shape, c.input);
    uint64_t n = ElementCount(c.input);
    auto out = model->Run({Fp32(model->inputs()[0].name, c.input, Ramp(n, -1, 1))}, {});
    ASSERT_EQ(out.size(), model->outputs().size());
    for (size_t k = 0; k < out.size(); ++k) {
      EXPECT_EQ(out[k].shape, model->outputs()[k].shape);
      for (float v : Floats(out[k])) ASSERT_TRUE(std::isfinite(v));
    }
  }
}

TEST(TfliteImport, ReportsTheOperatorsItTranslated) {
  auto r = tflite::ImportTflite(ReadFile(kModels / "hey_jarvis_v0.1.tflite"));
  EXPECT_EQ(r.operators,
            (std::vector<std::string>{"ADD", "FULLY_CONNECTED", "GREATER_EQUAL", "IF", "LOGISTIC",
                                      "MEAN", "MUL", "RESHAPE", "RSQRT", "SUB"}));
  EXPECT_EQ(r.operator_count, 52u);
}

std::string ImportError(const std::string& bytes) {
  try {
    tflite::ImportTflite(bytes);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "imported";
  return "";
}

TEST(TfliteImport, RefusesDamagedFiles) {
  std::string good = ReadFile(kModels / "hey_rhasspy_v0.1.tflite");
  EXPECT_NE(ImportError("").find("too short"), std::string::npos);
  EXPECT_NE(ImportError(good.substr(0, good.size() / 2)).find("does not verify"),
            std::string::npos);
  std::string renamed = good;
  renamed.replace(4, 4, "ONNX");
  EXPECT_NE(ImportError(renamed).find("not a TensorFlow Lite model"), std::string::npos);
  // Every single-byte change in the first kilobyte: refused with kInvalidArgument or imported.
  for (size_t i = 0; i < 1024; i += 7) {
    std::string bent = good;
    bent[i] = static_cast<char>(bent[i] ^ 0x5a);
    try {
      tflite::ImportTflite(bent);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << i;
    }
  }
}

TEST(TfliteImport, InputShapesCanBeDeclared) {
  tflite::ImportOptions o;
  o.input_shapes["no such input"] = {1, 2};
  try {
    tflite::ImportTflite(ReadFile(kModels / "alexa_v0.1.tflite"), o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no input 'no such input'"), std::string::npos);
  }
  RuntimeOptions ro;
  ro.input_shapes["serving_default_input_1:0"] = {-1, 76, 32, 1};
  auto model = LoadModel("tflite", kModels / "embedding_model.tflite", ro);
  EXPECT_EQ(model->inputs()[0].shape, (Shape{-1, 76, 32, 1}));
  auto out =
      model->Run({Fp32("serving_default_input_1:0", {3, 76, 32, 1}, Ramp(3 * 76 * 32, -2, 3))}, {});
  EXPECT_EQ(out[0].shape, (Shape{3, 1, 1, 96}));
}

}  // namespace
}  // namespace outpost
