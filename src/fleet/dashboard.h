// The fleet dashboard: one self-contained page (no external assets, so it works on an
// isolated network) that reads the same JSON API with an operator token kept in the tab's
// session storage. Devices, deployments with rollout progress, drift and health alerts, the
// audit log; laid out for a laptop and for a phone.
#pragma once

#include <string_view>

namespace outpost::fleet {

std::string_view DashboardHtml();

}  // namespace outpost::fleet
