// libFuzzer target for HTTP/1.1 request framing (fuzz/http_request_fuzz_input.h).
#include "http_request_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunHttpRequestInput(data, size);
  return 0;
}
