// When a device may update, and what: maintenance windows (local time), a bandwidth cap, a
// pause while the route to the update server goes over a metered interface, and pinned models
// that updates leave alone.
#pragma once

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace outpost::tuf {

struct MaintenanceWindow {
  int start_minute = 0;  // minutes after local midnight
  int end_minute = 0;    // exclusive; before start: the window spans midnight
};

// "HH:MM-HH:MM". Throws Error(kInvalidArgument) naming the text.
MaintenanceWindow ParseWindow(const std::string& text);

struct UpdatePolicy {
  std::vector<MaintenanceWindow> windows;       // empty: any time
  uint64_t max_bytes_per_second = 0;            // 0: no cap
  std::vector<std::string> metered_interfaces;  // names; a trailing '*' matches a prefix
  std::set<std::string> pinned_models;
};

// Why an update may not start now (nullopt: it may). `update_host` is the update server's
// host name or address; the interface its route leaves by decides whether the link is metered.
std::optional<std::string> PolicyBlocks(const UpdatePolicy& policy,
                                        std::chrono::system_clock::time_point now,
                                        const std::string& update_host);

// The network interface the kernel's main routing table sends `address` (IPv4) out of;
// loopback addresses give "lo". Empty when it cannot be told.
std::string RouteInterface(const std::string& host);

}  // namespace outpost::tuf
