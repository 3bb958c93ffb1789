#include "tests/store/throwaway_postgres.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tests/store/store_contract.h"

#ifndef SATLAB_PG_THROWAWAY
#error "SATLAB_PG_THROWAWAY must name scripts/pg_throwaway.sh"
#endif

namespace satlab::testing {

absl::StatusOr<std::unique_ptr<ThrowawayPostgres>> ThrowawayPostgres::Start() {
  // Under /tmp, not $TMPDIR: the server's user must reach the directory,
  // and a $TMPDIR inside root's home would not let it.
  char tmpl[] = "/tmp/satlab-pg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create a directory under /tmp: ", std::strerror(errno)));
  }
  std::unique_ptr<ThrowawayPostgres> pg(new ThrowawayPostgres(tmpl));
  if (absl::Status s = pg->Restart(); !s.ok()) return s;
  return pg;
}

ThrowawayPostgres::~ThrowawayPostgres() {
  (void)Kill();
  store::testing::RemoveTree(dir_);
}

absl::Status ThrowawayPostgres::Run(absl::string_view command) {
  // The script's watcher stops the server and removes the directory if this
  // process ends without the destructor (killed by a timeout, or a server
  // held for the whole process, like the tests' shared ones).
  const std::string line = absl::StrCat(
      SATLAB_PG_THROWAWAY, " ", command, " ", dir_, " ",
      command == "start" ? absl::StrCat(getpid(), " remove") : "", " 2>&1");
  FILE* out = popen(line.c_str(), "r");
  if (out == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", line, ": ", std::strerror(errno)));
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), out)) > 0) text.append(buf, n);
  int status = pclose(out);
  if (status != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the throwaway PostgreSQL did not ", command, " (", line,
        " exited with ", WIFEXITED(status) ? WEXITSTATUS(status) : status,
        "):\n", text));
  }
  if (command == "start") {
    // "port=N pid=P url=..." is the last line.
    size_t at = text.rfind("port=");
    if (at == std::string::npos ||
        !absl::SimpleAtoi(text.substr(at + 5, text.find(' ', at) - at - 5),
                          &port_)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the throwaway PostgreSQL printed no port:\n", text));
    }
  }
  return absl::OkStatus();
}

absl::Status ThrowawayPostgres::Stop() { return Run("stop"); }

absl::Status ThrowawayPostgres::Kill() { return Run("kill"); }

absl::Status ThrowawayPostgres::Restart() { return Run("start"); }

std::string ThrowawayPostgres::Url(absl::string_view database) const {
  return absl::StrCat("postgresql://satlab@127.0.0.1:", port_, "/", database);
}

absl::Status ThrowawayPostgres::CreateDatabase(absl::string_view name) {
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return absl::InvalidArgumentError(
          absl::StrCat("database name: expected [A-Za-z0-9_], got ", name));
    }
  }
  return Query("postgres", absl::StrCat("CREATE DATABASE ", name)).status();
}

absl::StatusOr<std::string> ThrowawayPostgres::Query(absl::string_view database,
                                                     absl::string_view sql) {
  PGconn* conn = PQconnectdb(Url(database).c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(
        absl::StrCat("connect to ", Url(database), ": ", why));
  }
  PGresult* r = PQexec(conn, std::string(sql).c_str());
  ExecStatusType status = PQresultStatus(r);
  absl::StatusOr<std::string> out;
  if (status == PGRES_TUPLES_OK) {
    out = PQntuples(r) > 0 ? std::string(PQgetvalue(r, 0, 0)) : "";
  } else if (status == PGRES_COMMAND_OK) {
    out = "";
  } else {
    out = absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(r)));
  }
  PQclear(r);
  PQfinish(conn);
  return out;
}

}  // namespace satlab::testing
