// What this process holds in memory, from /proc/self/statm.
#pragma once

#include <cstdint>

namespace outpost {

// Resident set size in bytes (0 when /proc cannot be read).
uint64_t ResidentBytes();
// Virtual size in bytes.
uint64_t VirtualBytes();

}  // namespace outpost
