// libFuzzer target for what devices and operators send the fleet server (see
// fleet_fuzz_input.h).
#include "fleet_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunFleetInput(data, size);
  return 0;
}
