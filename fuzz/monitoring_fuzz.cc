// libFuzzer target for model monitoring: manifest specs and the streams they watch (see
// monitoring_fuzz_input.h).
#include "monitoring_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunMonitoringInput(data, size);
  return 0;
}
