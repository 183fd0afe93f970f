// libFuzzer target for the KServe v2 HTTP body decoder (fuzz/http_codec_fuzz_input.h).
#include "http_codec_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunHttpCodecInput(data, size);
  return 0;
}
