// How the CLI talks to a running agent: an HTTP client carrying the caller's API key, found
// in this order: $OUTPOST_API_KEY, the file $OUTPOST_API_KEY_FILE names, the console's admin
// key (<auth_dir>/admin.key, made by the agent at first start, 0600) when this user may read
// it. Without any, requests go out without a credential (fine for what loopback leaves open).
// An https:// URL is verified against the system's CAs, or $OUTPOST_CA_FILE.
#pragma once

#include <httplib.h>

#include <string>

namespace outpost {

inline constexpr const char* kDefaultAdminKeyFile = "/var/lib/outpost/auth/admin.key";

httplib::Client AgentClient(const std::string& url);

// "the agent answered 403: <its error message>" from a response body.
std::string AgentError(const httplib::Response& res);

}  // namespace outpost
