#include "supervisor/supervisor.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "core/error.h"
#include "core/logging.h"
#include "core/names.h"
#include "net/http_client.h"
#include "package/package.h"
#include "supervisor/verified_build.h"
#include "update/slots.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kAgentName = "outpostd";

enum class Event { kTimeout, kTerminate, kChild };

// Waits for a blocked signal: termination, a child's exit, or nothing before `timeout`.
Event WaitEvent(milliseconds timeout) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  timespec ts{static_cast<time_t>(timeout.count() / 1000),
              static_cast<long>(timeout.count() % 1000) * 1000000};
  int sig = ::sigtimedwait(&set, nullptr, &ts);
  if (sig == SIGTERM || sig == SIGINT) return Event::kTerminate;
  if (sig == SIGCHLD) return Event::kChild;
  return Event::kTimeout;
}

bool Healthy(const std::string& url) {
  net::HttpRequest r;
  r.url = url;
  r.timeout = std::chrono::milliseconds(1000);
  r.max_response_bytes = 64u << 10;
  return net::Perform(r).status == 200;
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

class Supervisor {
 public:
  explicit Supervisor(const SupervisorOptions& o)
      : o_(o),
        dir_(o.slots / kAgentName),
        run_root_(o.run_dir.empty() ? o.slots / ".run" : o.run_dir),
        trust_(LoadTrustPolicy(o.trust_file)) {
    for (const auto& d : o.library_dirs) {
      struct stat st {};
      if (::stat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        outpost::Fail(ErrorCode::kInvalidArgument,
                      "library directory " + d.string() + " is missing");
      if ((st.st_mode & 022) != 0 || (st.st_uid != 0 && st.st_uid != ::geteuid()))
        outpost::Fail(ErrorCode::kPermissionDenied,
                      "library directory " + d.string() +
                          " may be written by others than root or this user: an agent cannot "
                          "load libraries from it");
      library_path_ += (library_path_.empty() ? "" : ":") + fs::absolute(d).string();
    }
    if (!o.agent_user.empty()) {
      const passwd* pw = ::getpwnam(o.agent_user.c_str());
      if (!pw) outpost::Fail(ErrorCode::kInvalidArgument, "no user " + o.agent_user);
      agent_uid_ = pw->pw_uid;
      agent_gid_ = pw->pw_gid;
      if (::geteuid() != 0)
        outpost::Fail(ErrorCode::kPermissionDenied,
                      "--agent-user needs the supervisor to run as root");
      if (agent_uid_ == 0)
        outpost::Fail(ErrorCode::kInvalidArgument, "--agent-user must not be root");
    } else if (::geteuid() == 0) {
      Log(LogSeverity::kWarn, "supervisor", "agent_as_root",
          "the agent runs as root: name an unprivileged user with --agent-user");
    }
    std::error_code ec;
    fs::create_directories(dir_, ec);
    for (const fs::path& d : {o.slots, dir_}) RequireOwnDirectory(d);
    // The hand-off directory is the agent's: it writes there, never in the slots.
    const fs::path incoming = AgentHandoffDir(o.slots);
    fs::create_directories(incoming, ec);
    struct stat st {};
    if (::lstat(incoming.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      outpost::Fail(ErrorCode::kFailedPrecondition, incoming.string() + " is not a directory");
    if (agent_uid_ != ::geteuid() && ::chown(incoming.c_str(), agent_uid_, agent_gid_) != 0)
      outpost::Fail(ErrorCode::kPermissionDenied,
                    "cannot give " + incoming.string() + " to " + o.agent_user);
    ::chmod(incoming.c_str(), 0700);
    RemoveStaleBuilds(run_root_);
  }

  int Run() {
    milliseconds backoff{1000};
    while (true) {
      TakeHandoff();
      SlotState state = Load();
      if (!state.trial.empty()) {
        if (state.trial_attempts >= 2) {
          Fail(state, "its trial was interrupted twice");
          continue;
        }
        ++state.trial_attempts;
        WriteSlots(dir_, state);
        std::string reason;
        auto outcome = Trial(state.trial, reason);
        if (outcome == Outcome::kTerminated) return Stop();
        if (outcome == Outcome::kFailed) {
          Fail(state, reason);
          continue;
        }
        state.previous = state.committed;
        state.committed = state.trial;
        state.trial.clear();
        state.trial_attempts = 0;
        WriteSlots(dir_, state);
        RemoveOthers(state);
        Log(LogSeverity::kInfo, "supervisor", "agent_committed",
            fmt::format("agent {} committed (previous {})", state.committed, state.previous),
            {{"version", state.committed}, {"previous", state.previous}});
      } else if (!Start(state.committed, /*trial=*/false)) {
        if (!state.previous.empty() && state.previous != state.committed) {
          Log(LogSeverity::kError, "supervisor", "agent_fallback",
              fmt::format("agent {} cannot start; falling back to {}", state.committed,
                          state.previous),
              {{"version", state.committed}, {"previous", state.previous}});
          state.committed = state.previous;
          WriteSlots(dir_, state);
          continue;
        }
        if (WaitEvent(backoff) == Event::kTerminate) return 0;
        backoff = std::min(backoff * 2, o_.max_restart_backoff);
        continue;
      }
      // Supervise the running build until it exits or we are told to stop.
      auto started = Clock::now();
      int status = 0;
      while (true) {
        Event e = WaitEvent(milliseconds(1000));
        if (e == Event::kTerminate) return Stop();
        if (Reaped(&status)) break;
      }
      TakeHandoff();  // an agent that exits to update itself left its new build there
      if (Load().trial.empty()) {
        if (Clock::now() - started > std::chrono::seconds(60)) backoff = milliseconds(1000);
        Log(LogSeverity::kWarn, "supervisor", "agent_exited",
            fmt::format("agent {} {}; restarting in {} ms", Load().committed,
                        DescribeStatus(status), backoff.count()),
            {{"version", Load().committed}, {"backoff_ms", backoff.count()}});
        if (WaitEvent(backoff) == Event::kTerminate) return 0;
        backoff = std::min(backoff * 2, o_.max_restart_backoff);
      } else {
        Log(LogSeverity::kInfo, "supervisor", "agent_trial",
            "agent exited to start the staged build " + Load().trial, {{"version", Load().trial}});
      }
    }
  }

 private:
  enum class Outcome { kHealthy, kFailed, kTerminated };

  SlotState Load() {
    SlotState s;
    if (auto r = ReadSlots(dir_)) s = *r;
    if (s.committed.empty()) {
      // First start: the newest installed build.
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(dir_, ec)) {
        std::string v = e.path().filename().string();
        if (v[0] != '.' && IsValidVersionLabel(v) && v != s.trial &&
            (s.committed.empty() || CompareVersions(v, s.committed) > 0))
          s.committed = v;
      }
      if (s.committed.empty())
        outpost::Fail(ErrorCode::kNotFound, "no agent build installed in " + dir_.string());
      WriteSlots(dir_, s);
    }
    return s;
  }

  // Verifies the build against the trust file, then starts it.
  bool Start(const std::string& version, bool trial) {
    fs::path vdir = dir_ / version;
    running_.reset();  // the last build's copy: its process has exited
    std::unique_ptr<VerifiedBuild> build;
    try {
      PackageReport r = VerifyInstalledVersion(vdir, trust_);
      if (r.manifest.json.value("runtime", "") != "agent" || r.manifest.version != version)
        outpost::Fail(ErrorCode::kPermissionDenied, "not an agent build of version " + version);
      build = std::make_unique<VerifiedBuild>(vdir, r.manifest, run_root_);
    } catch (const std::exception& e) {
      Log(LogSeverity::kError, "supervisor", "agent_refused",
          fmt::format("agent {} refused: {}", version, e.what()), {{"version", version}});
      return false;
    }
    pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      if (agent_uid_ != ::geteuid() && (::initgroups(o_.agent_user.c_str(), agent_gid_) != 0 ||
                                        ::setgid(agent_gid_) != 0 || ::setuid(agent_uid_) != 0))
        ::_exit(126);
      ::setenv("OUTPOST_AGENT_SLOTS", o_.slots.c_str(), 1);
      ::setenv("OUTPOST_AGENT_SLOT_VERSION", version.c_str(), 1);
      if (trial) ::setenv("OUTPOST_AGENT_TRIAL", "1", 1);
      // Libraries from the build's own copy, the system, or the named directories only.
      for (const char* name : {"LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"}) ::unsetenv(name);
      if (!library_path_.empty()) ::setenv("LD_LIBRARY_PATH", library_path_.c_str(), 1);
      std::vector<char*> argv;
      std::string path = build->entry().string();  // argv[0] only: the descriptor is what runs
      argv.push_back(path.data());
      std::vector<std::string> args = o_.agent_args;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      // A script's interpreter opens it as /dev/fd/N: that descriptor must survive the exec.
      if (build->entry_is_script()) ::fcntl(build->entry_fd(), F_SETFD, 0);
      ::fexecve(build->entry_fd(), argv.data(), environ);
      ::_exit(127);
    }
    running_ = std::move(build);
    child_ = pid;
    Log(LogSeverity::kInfo, "supervisor", "agent_started",
        fmt::format("agent {} started{} (pid {})", version, trial ? " on trial" : "", pid),
        {{"version", version}, {"trial", trial}, {"pid", pid}});
    return true;
  }

  bool Reaped(int* status) {
    if (child_ <= 0) return true;
    pid_t r = ::waitpid(child_, status, WNOHANG);
    if (r == child_) {
      child_ = -1;
      return true;
    }
    return false;
  }

  void Kill() {
    if (child_ <= 0) return;
    ::kill(child_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 300 && !Reaped(&status); ++i) WaitEvent(milliseconds(100));
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, &status, 0);
      child_ = -1;
    }
  }

  int Stop() {
    Kill();
    return 0;
  }

  Outcome Trial(const std::string& version, std::string& reason) {
    if (!Start(version, /*trial=*/true)) {
      reason = "it failed verification or could not be started";
      return Outcome::kFailed;
    }
    auto deadline = Clock::now() + o_.trial_timeout;
    std::optional<Clock::time_point> healthy_since;
    int status = 0;
    while (true) {
      if (WaitEvent(milliseconds(200)) == Event::kTerminate) {
        Kill();
        return Outcome::kTerminated;  // the trial stays recorded and runs again next start
      }
      if (Reaped(&status)) {
        reason = "it " + DescribeStatus(status) +
                 (healthy_since ? " during the stable window" : " before it was healthy");
        return Outcome::kFailed;
      }
      auto now = Clock::now();
      if (!healthy_since) {
        if (Healthy(o_.health_url)) {
          healthy_since = now;
        } else if (now > deadline) {
          Kill();
          reason = "not healthy within " + std::to_string(o_.trial_timeout.count()) + " ms";
          return Outcome::kFailed;
        }
      } else if (now - *healthy_since >= o_.trial_stable) {
        if (Healthy(o_.health_url)) return Outcome::kHealthy;
        Kill();
        reason = "healthy, then not at the end of the stable window";
        return Outcome::kFailed;
      }
    }
  }

  // The slots hold what runs as the agent: with a user of its own, it must not be able to
  // write them (or swap them for a directory it can).
  void RequireOwnDirectory(const fs::path& d) {
    struct stat st {};
    if (::lstat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      outpost::Fail(ErrorCode::kFailedPrecondition, d.string() + " is not a directory");
    const bool own = st.st_uid == ::geteuid() || st.st_uid == 0;
    if ((st.st_mode & 022) == 0 && own) return;
    if (o_.agent_user.empty()) {
      Log(LogSeverity::kWarn, "supervisor", "slots_writable",
          d.string() + " may be written by users other than the supervisor's");
      return;
    }
    outpost::Fail(ErrorCode::kPermissionDenied,
                  d.string() + " may be written by users other than the supervisor's (" +
                      o_.agent_user + " among them): make it the supervisor's, mode 0755");
  }

  // A build the agent handed over: copied away from the agent's directory first (so nothing
  // the agent's user runs can change it while it is checked), verified against the trust
  // file, installed into the slots and recorded as the trial, which Run() then starts.
  void TakeHandoff() {
    const fs::path offered = AgentHandoffPackage(o_.slots);
    int in = ::open(offered.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (in < 0) return;
    ::unlink(offered.c_str());
    std::error_code ec;
    fs::create_directories(run_root_, ec);
    const fs::path copy = run_root_ / "handoff.opkg";
    try {
      CopyHandoff(in, copy);
      ::close(in);
      in = -1;
      PackageReport r = VerifyPackageFile(copy, &trust_);
      const std::string& version = r.manifest.version;
      if (r.manifest.name != kAgentName || r.manifest.json.value("runtime", "") != "agent")
        outpost::Fail(ErrorCode::kPermissionDenied,
                      r.manifest.name + " " + version + " is not an agent build");
      SlotState state = Load();
      if (version == state.committed || state.HasFailed(version))
        outpost::Fail(ErrorCode::kFailedPrecondition,
                      version + (version == state.committed ? " is the committed build"
                                                            : " failed its trial before"));
      state.previous.clear();  // its slot takes the new build
      state.trial.clear();
      WriteSlots(dir_, state);
      RemoveOthers(state);
      InstallPackage(copy, o_.slots, &trust_);
      state.trial = version;
      state.trial_attempts = 0;
      WriteSlots(dir_, state);
      Log(LogSeverity::kInfo, "supervisor", "agent_staged",
          fmt::format("agent {} handed over and installed beside {}", version, state.committed),
          {{"version", version}, {"committed", state.committed}});
    } catch (const std::exception& e) {
      Log(LogSeverity::kError, "supervisor", "agent_refused",
          std::string("the build the agent handed over was refused: ") + e.what());
    }
    if (in >= 0) ::close(in);
    fs::remove(copy, ec);
  }

  static void CopyHandoff(int in, const fs::path& to) {
    struct stat st {};
    if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode))
      outpost::Fail(ErrorCode::kInvalidArgument, "not a regular file");
    int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) outpost::Fail(ErrorCode::kInternal, "cannot write " + to.string());
    char buf[1 << 16];
    ssize_t n;
    bool ok = true;
    while (ok && (n = ::read(in, buf, sizeof buf)) > 0)
      ok = ::write(out, buf, static_cast<size_t>(n)) == n;
    ok = ok && n == 0;
    ::close(out);
    if (!ok) outpost::Fail(ErrorCode::kInternal, "cannot copy the handed-over build");
  }

  void Fail(SlotState& state, const std::string& reason) {
    Kill();
    std::string version = state.trial;
    state.failed.push_back(version);
    state.last_failure = version + ": " + reason;
    state.trial.clear();
    state.trial_attempts = 0;
    WriteSlots(dir_, state);
    std::error_code ec;
    if (version != state.committed && version != state.previous) fs::remove_all(dir_ / version, ec);
    Log(LogSeverity::kError, "supervisor", "agent_rolled_back",
        fmt::format("agent {} rolled back to {}: {}", version, state.committed, reason),
        {{"version", version}, {"committed", state.committed}, {"reason", reason}});
  }

  void RemoveOthers(const SlotState& state) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      std::string v = e.path().filename().string();
      if (v[0] == '.' || v == state.committed || v == state.previous) continue;
      fs::remove_all(e.path(), ec);
    }
  }

  const SupervisorOptions& o_;
  uid_t agent_uid_ = ::geteuid();
  gid_t agent_gid_ = ::getegid();
  fs::path dir_;
  fs::path run_root_;
  std::string library_path_;
  TrustPolicy trust_;
  pid_t child_ = -1;
  std::unique_ptr<VerifiedBuild> running_;  // the copy the child runs from
};

}  // namespace

int RunSupervisor(const SupervisorOptions& options) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  return Supervisor(options).Run();
}

}  // namespace outpost
