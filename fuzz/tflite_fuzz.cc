// libFuzzer target for the TensorFlow Lite importer (see tflite_fuzz_input.h).
#include "tflite_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunTfliteInput(data, size);
  return 0;
}
