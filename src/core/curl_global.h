// libcurl's process-wide initialisation, done once whichever client comes first (curl's own
// curl_global_init is neither thread-safe nor free to repeat). Header-only: only code that
// links libcurl includes it.
#pragma once

#include <curl/curl.h>

#include "core/error.h"

namespace outpost {

inline void EnsureCurlInitialised() {
  static const bool ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!ok) Fail(ErrorCode::kInternal, "libcurl failed to initialise");
}

}  // namespace outpost
