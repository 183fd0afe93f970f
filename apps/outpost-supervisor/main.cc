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
  std::string run_dir;
  std::vector<std::string> library_dirs;
  app.add_option(
      "--run-dir", run_dir,
      "Where the running build's verified copy is made (default <slots>/.run; in "
      "production a directory only the supervisor writes, e.g. /run/outpost-supervisor)");
  app.add_option("--library-dir", library_dirs,
                 "A directory the agent may load libraries from besides its own build and the "
                 "system's (repeatable; writable by root or this user only)");
  app.add_option("--agent-user", o.agent_user,
                 "Run the agent as this user (its groups too), which must not be able to write "
                 "the slots; the supervisor then runs as root");
  app.add_option("agent_args", o.agent_args, "Arguments for outpostd (after --)");
  CLI11_PARSE(app, argc, argv);
  o.slots = slots;
  o.trust_file = trust;
  o.run_dir = run_dir;
  o.library_dirs.assign(library_dirs.begin(), library_dirs.end());
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
