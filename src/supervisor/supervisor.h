// outpost-supervisor: runs the committed outpostd build from the agent's A/B slots
// (<slots>/outpostd/<version>/, installed from signed packages with runtime "agent"), restarts
// it when it crashes, and takes a new build through its trial: started in trial mode, it
// must answer the health URL within the trial timeout and stay up for the stable window, or
// the previous build is restored and the new one marked failed. A trial that a power loss
// interrupts is retried once, then refused. Every build is verified against the trust file
// and run from a private copy of exactly its signed files (supervisor/verified_build.h), with
// libraries from that copy, the system, or library directories the operator names. The slots
// are the supervisor's alone: the agent hands a new build over in <slots>/.incoming and exits,
// and can run as a user of its own (--agent-user) that may not write them.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace outpost {

struct SupervisorOptions {
  std::filesystem::path slots;       // holds outpostd/<version>/ and outpostd/.slots.json
  std::filesystem::path trust_file;  // who may sign agent builds
  std::string health_url;            // e.g. http://127.0.0.1:8000/v2/health/ready
  std::chrono::milliseconds trial_timeout{60000};
  std::chrono::milliseconds trial_stable{10000};
  std::chrono::milliseconds max_restart_backoff{30000};
  std::vector<std::string> agent_args;
  // Where the running build's private copy lives (empty: <slots>/.run). In production a
  // directory only the supervisor may write (/run/outpost-supervisor).
  std::filesystem::path run_dir;
  // Libraries the agent may load besides its own and the system's (the agent's
  // LD_LIBRARY_PATH, which is otherwise cleared with LD_PRELOAD and LD_AUDIT). Each must be
  // writable by its owner alone, and owned by root or the supervisor's user.
  std::vector<std::filesystem::path> library_dirs;
  // The user the agent runs as (the supervisor must be root to switch); empty: the
  // supervisor's own. Given, the slots must be writable by the supervisor's user alone.
  std::string agent_user;
};

// Runs until SIGTERM or SIGINT (forwarded to the agent); returns the exit code.
int RunSupervisor(const SupervisorOptions& options);

}  // namespace outpost
