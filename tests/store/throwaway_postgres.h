// A throwaway PostgreSQL server for tests: scripts/pg_throwaway.sh (Debian's
// postgresql-15 binaries, its own data directory under a fresh temp
// directory, 127.0.0.1 on a free port chosen at start, socket in that
// directory, run as an unprivileged user when the test runs as root),
// stopped by PID and removed when the object goes, or when the process
// that started it ends without destroying it. Issue 14's cluster and
// failover tests start theirs with the same class (library
// satlab_test_postgres) or the same script.
#ifndef SATLAB_TESTS_STORE_THROWAWAY_POSTGRES_H_
#define SATLAB_TESTS_STORE_THROWAWAY_POSTGRES_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace satlab::testing {

class ThrowawayPostgres {
 public:
  // initdb + start. FAILED_PRECONDITION with the script's output (initdb's
  // or the server's log) when PostgreSQL cannot start: tests fail loudly.
  static absl::StatusOr<std::unique_ptr<ThrowawayPostgres>> Start();
  // Stops the server (if running; immediately, its data is thrown away)
  // and removes its directory.
  ~ThrowawayPostgres();
  ThrowawayPostgres(const ThrowawayPostgres&) = delete;
  ThrowawayPostgres& operator=(const ThrowawayPostgres&) = delete;

  // Fast shutdown by PID, waiting for the process to end.
  absl::Status Stop();
  // Immediate shutdown by PID (like a crash: no checkpoint; Restart
  // replays the WAL), waiting for the process to end.
  absl::Status Kill();
  // Starts it again on the same data and port (after Stop).
  absl::Status Restart();

  int port() const { return port_; }
  // Its directory (data, socket, logs).
  const std::string& dir() const { return dir_; }
  // postgresql://satlab@127.0.0.1:<port>/<database>; database `satlab`
  // exists from the start.
  std::string Url(absl::string_view database = "satlab") const;
  // CREATE DATABASE `name` (letters, digits and _ only).
  absl::Status CreateDatabase(absl::string_view name);
  // Runs `sql` (one or more statements) on `database`; the first row's
  // first value of the last statement as text ("" when none).
  absl::StatusOr<std::string> Query(absl::string_view database,
                                    absl::string_view sql);

 private:
  explicit ThrowawayPostgres(std::string dir) : dir_(std::move(dir)) {}
  absl::Status Run(absl::string_view command);

  std::string dir_;
  int port_ = 0;
};

}  // namespace satlab::testing

#endif  // SATLAB_TESTS_STORE_THROWAWAY_POSTGRES_H_
