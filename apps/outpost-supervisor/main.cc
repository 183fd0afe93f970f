// outpost-supervisor: runs outpostd from its A/B slots and takes new builds through a trial.
#include <CLI/CLI.hpp>

#include <iostream>

#include "core/logging.h"
#include "supervisor/supervisor.h"

int main(int argc, char** argv) {
  CLI::App app{
      "outpost-supervisor: runs the committed outpostd build, restarts it when it fails, and "
      "takes a staged build through a trial, restoring the previous one unless it becomes "
      "healthy"};
  outpost::SupervisorOptions o;
  std::string slots, trust;
  double timeout_s = 60, stable_s = 10;
  app.add_option("--slots", slots, "Agent slots directory (holds outpostd/<version>/)")->required();
  app.add_option("--trust-file", trust, "Keys whose signatures make an agent build runnable")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--health-url", o.health_url, "The agent's readiness URL")->required();
  app.add_option("--trial-timeout-secs", timeout_s, "Time a new build has to become healthy")
      ->capture_default_str();
  app.add_option("--trial-stable-secs", stable_s, "Time it must then stay up to be committed")
      ->capture_default_str();
  app.add_option("agent_args", o.agent_args, "Arguments for outpostd (after --)");
  CLI11_PARSE(app, argc, argv);
  o.slots = slots;
  o.trust_file = trust;
  o.trial_timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  o.trial_stable = std::chrono::milliseconds(static_cast<int64_t>(stable_s * 1000));
  outpost::InitLogging("info", false);
  try {
    return outpost::RunSupervisor(o);
  } catch (const std::exception& e) {
    std::cerr << "outpost-supervisor: " << e.what() << "\n";
    return 1;
  }
}
