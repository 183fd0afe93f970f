// libFuzzer target for what reads untrusted package bytes (fuzz/package_fuzz_input.h).
#include "package_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunPackageInput(data, size);
  return 0;
}
