// libFuzzer target for TUF metadata, which arrives from the network (see tuf_fuzz_input.h).
#include "tuf_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunTufInput(data, size);
  return 0;
}
