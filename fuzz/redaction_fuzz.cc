// libFuzzer target for prompt redaction (see redaction_fuzz_input.h).
#include "redaction_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunRedactionInput(data, size);
  return 0;
}
