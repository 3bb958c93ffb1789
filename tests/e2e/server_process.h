// The real satlab-server binary as a child process of a test: started with
// given arguments, its "listening on host:port" line read from its stdout,
// stopped by PID (SIGTERM, or SIGKILL for crash tests). Dies with the test.
#ifndef SATLAB_TESTS_E2E_SERVER_PROCESS_H_
#define SATLAB_TESTS_E2E_SERVER_PROCESS_H_

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace satlab::testing {

class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& args) {
    // Built before fork: the child only calls async-signal-safe functions.
    std::vector<char*> argv;
    for (const std::string& arg : args) {
      argv.push_back(const_cast<char*>(arg.c_str()));
    }
    argv.push_back(nullptr);
    int out[2];
    if (pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      // The child dies with the test, even if the test is killed.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    stdout_ = fdopen(out[0], "r");
    char line[256] = {};
    if (pid_ > 0 && stdout_ != nullptr &&
        std::fgets(line, sizeof(line), stdout_) != nullptr) {
      const std::string text(line);
      const std::string prefix = "listening on ";
      if (text.rfind(prefix, 0) == 0) {
        address_ = text.substr(prefix.size());
        while (!address_.empty() && isspace(address_.back())) {
          address_.pop_back();
        }
      }
    }
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { Stop(SIGTERM); }

  // Sends `signal` and reaps the process; its exit status (as waitpid
  // gives it), or -1 when it was not running.
  int Stop(int signal) {
    int status = -1;
    if (pid_ > 0) {
      kill(pid_, signal);
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    if (stdout_ != nullptr) {
      std::fclose(stdout_);
      stdout_ = nullptr;
    }
    return status;
  }

  // "host:port" from the server's first line; empty if it did not start.
  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }

  // Resident set size from /proc/PID/status, bytes (-1 if unreadable).
  int64_t Rss() const {
    std::ifstream status(absl::StrCat("/proc/", pid_, "/status"));
    std::string key;
    while (status >> key) {
      if (key == "VmRSS:") {
        int64_t kib;
        status >> kib;
        return kib * 1024;
      }
      status.ignore(1 << 20, '\n');
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* stdout_ = nullptr;
  std::string address_;
};

}  // namespace satlab::testing

#endif  // SATLAB_TESTS_E2E_SERVER_PROCESS_H_
