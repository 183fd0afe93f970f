// The TensorFlow Lite importer's fuzz input (shared by fuzz/tflite_fuzz.cc and the corpus
// replay test): a .tflite file arrives in a package a publisher signed, but the importer must
// hold even against a signer's mistakes or a hostile one. The bytes go through the verifier,
// the reader and every translation; a file that imports must give a model that parses back.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "tflite/tflite_importer.h"

namespace outpost_fuzz {

inline void RunTfliteInput(const uint8_t* data, size_t size) {
  // A copy: the flatbuffer verifier needs the buffer aligned as the allocator aligns it.
  std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    auto result = outpost::tflite::ImportTflite(bytes);
    onnx::ModelProto model;
    if (!model.ParseFromString(result.onnx)) abort();
  } catch (const outpost::Error& e) {
    if (e.code() != outpost::ErrorCode::kInvalidArgument) abort();
  }
}

}  // namespace outpost_fuzz
