// A software TPM (swtpm) for one test, on a Unix socket in its own state directory. Stopping
// and starting it again on the same directory is a reboot: persistent state (seeds, NV,
// persistent objects) stays, PCRs and loaded objects go.
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

namespace outpost {

class SoftwareTpm {
 public:
  explicit SoftwareTpm(std::filesystem::path state) : state_(std::move(state)) {
    std::filesystem::create_directories(state_);
    Start();
  }
  ~SoftwareTpm() { Stop(); }
  SoftwareTpm(const SoftwareTpm&) = delete;
  SoftwareTpm& operator=(const SoftwareTpm&) = delete;

  std::string tcti() const { return "swtpm:path=" + socket_path(); }

  void Start() {
    std::filesystem::remove(socket_path());
    std::filesystem::remove(socket_path() + ".ctrl");
    const std::string dir = "dir=" + state_.string();
    const std::string server = "type=unixio,path=" + socket_path();
    const std::string ctrl = "type=unixio,path=" + socket_path() + ".ctrl";
    const std::string log = "file=" + (state_ / "swtpm.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execlp("swtpm", "swtpm", "socket", "--tpm2", "--tpmstate", dir.c_str(), "--server",
               server.c_str(), "--ctrl", ctrl.c_str(), "--flags", "not-need-init,startup-clear",
               "--seccomp", "action=none", "--log", log.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!Accepting()) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("swtpm exited at start (is it installed?); see " +
                                 (state_ / "swtpm.log").string());
      }
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("swtpm did not listen on " + socket_path());
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  std::string socket_path() const { return (state_ / "swtpm.sock").string(); }

  bool Accepting() const {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socket_path().copy(addr.sun_path, sizeof addr.sun_path - 1);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }

  std::filesystem::path state_;
  pid_t pid_ = -1;
};

}  // namespace outpost
