#include "update/policy.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace outpost::tuf {

MaintenanceWindow ParseWindow(const std::string& text) {
  int h1, m1, h2, m2;
  char tail;
  if (std::sscanf(text.c_str(), "%d:%d-%d:%d%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 < 0 ||
      h1 > 24 || h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59)
    Fail(ErrorCode::kInvalidArgument,
         "maintenance window '" + text + "' is not HH:MM-HH:MM (local time)");
  return {h1 * 60 + m1, h2 * 60 + m2};
}

namespace {

bool InWindow(const MaintenanceWindow& w, int minute) {
  if (w.start_minute <= w.end_minute) return minute >= w.start_minute && minute < w.end_minute;
  return minute >= w.start_minute || minute < w.end_minute;  // spans midnight
}

bool Matches(const std::string& pattern, const std::string& name) {
  if (!pattern.empty() && pattern.back() == '*')
    return name.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
  return pattern == name;
}

std::optional<in_addr> Resolve(const std::string& host) {
  in_addr a{};
  if (::inet_pton(AF_INET, host.c_str(), &a) == 1) return a;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return std::nullopt;
  a = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
  ::freeaddrinfo(res);
  return a;
}

}  // namespace

std::string RouteInterface(const std::string& host) {
  auto addr = Resolve(host);
  if (!addr) return "";
  uint32_t ip = addr->s_addr;  // network order, as /proc/net/route prints it (host-endian hex)
  if ((ntohl(ip) >> 24) == 127) return "lo";
  std::ifstream in("/proc/net/route");
  std::string line, best;
  int best_len = -1;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string iface;
    unsigned dest = 0, gateway = 0, flags = 0, refcnt = 0, use = 0, metric = 0, mask = 0;
    f >> iface >> std::hex >> dest >> gateway >> flags >> std::dec >> refcnt >> use >> metric >>
        std::hex >> mask;
    if (!f || !(flags & 1)) continue;  // RTF_UP
    if ((ip & mask) != dest) continue;
    int len = __builtin_popcount(mask);
    if (len > best_len) best_len = len, best = iface;
  }
  return best;
}

std::optional<std::string> PolicyBlocks(const UpdatePolicy& policy,
                                        std::chrono::system_clock::time_point now,
                                        const std::string& update_host) {
  if (!policy.windows.empty()) {
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm local{};
    ::localtime_r(&t, &local);
    int minute = local.tm_hour * 60 + local.tm_min;
    bool open = false;
    for (const auto& w : policy.windows) open = open || InWindow(w, minute);
    if (!open) return "outside the maintenance windows";
  }
  if (!policy.metered_interfaces.empty()) {
    std::string iface = RouteInterface(update_host);
    for (const auto& p : policy.metered_interfaces) {
      if (!iface.empty() && Matches(p, iface))
        return "paused: the route to " + update_host + " uses metered interface " + iface;
    }
  }
  return std::nullopt;
}

}  // namespace outpost::tuf
