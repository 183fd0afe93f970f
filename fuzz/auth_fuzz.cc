// libFuzzer target for the API key check (see auth_fuzz_input.h).
#include "auth_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunAuthInput(data, size);
  return 0;
}
