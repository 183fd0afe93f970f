// What keeps a web browser on the device (or on the LAN) from driving an API that was only
// meant for programs: a page on another origin, or one that rebinds its DNS name to 127.0.0.1,
// can make a browser send requests here, with no credential needed on loopback.
//   - Host must be a name this server answers to: an IP literal, localhost, this machine's
//     name, or one configured. A rebinding page's requests carry its own name.
//   - Origin, which browsers send on every cross-origin request and on every POST, must be
//     one configured (none by default: no page may call the API, and no CORS headers are sent).
//   - A state-changing request from a browser (it carries Origin or Sec-Fetch-* metadata) may
//     not use a type a page can send without a CORS preflight (text/plain, form posts; a body
//     with no type at all unless it is the binary tensor extension, whose header a page cannot
//     set without one). Programs keep sending what they send: `curl -d` posts JSON as a form.
#pragma once

#include <string>
#include <vector>

#include "http/message.h"
#include "http/server.h"

namespace outpost::http {

struct BrowserPolicy {
  std::vector<std::string> allowed_hosts;    // besides IP literals, localhost and the hostname
  std::vector<std::string> allowed_origins;  // exact "scheme://host[:port]" a page may call from
};

class BrowserGuard {
 public:
  explicit BrowserGuard(BrowserPolicy policy);

  // Status 0: the request may go on.
  Refusal Check(const Request& req) const;

  // Refuses what Check() refuses from the head, before a body is read, and answers CORS
  // preflights for the allowed origins.
  void Install(Server& server) const;

 private:
  bool HostAllowed(std::string_view host) const;
  bool OriginAllowed(const std::string& origin) const;
  BrowserPolicy policy_;
  std::string hostname_;
};

}  // namespace outpost::http
