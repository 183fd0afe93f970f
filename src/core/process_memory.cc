#include "core/process_memory.h"

#include <unistd.h>

#include <fstream>

namespace outpost {
namespace {

struct Statm {
  uint64_t size_pages = 0, resident_pages = 0;
};

Statm ReadStatm() {
  Statm s;
  std::ifstream statm("/proc/self/statm");
  statm >> s.size_pages >> s.resident_pages;
  return s;
}

uint64_t PageBytes() { return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)); }

}  // namespace

uint64_t ResidentBytes() { return ReadStatm().resident_pages * PageBytes(); }
uint64_t VirtualBytes() { return ReadStatm().size_pages * PageBytes(); }

}  // namespace outpost
