#include "server/tls/staged_identity.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/tls/tls_files.h"

namespace satlab::tls {
namespace {

// Writes `text` to `path` through a temporary file and a rename, so that a
// reader sees the old file or the new one, never a part.
absl::Status WriteAtomically(const std::string& path, const std::string& text) {
  const std::string aside = path + ".new";
  const int fd =
      open(aside.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("tls: cannot write ", aside, ": ", std::strerror(errno)));
  }
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return absl::InternalError(absl::StrCat("tls: cannot write ", aside, ": ",
                                              std::strerror(errno)));
    }
    written += static_cast<size_t>(n);
  }
  if (close(fd) != 0 || std::rename(aside.c_str(), path.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("tls: cannot replace ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

StagedIdentity::StagedIdentity(const TlsFiles& files, std::string dir)
    : files_(files),
      dir_(std::move(dir)),
      path_(absl::StrCat(dir_, "/identity.pem")) {}

absl::StatusOr<std::unique_ptr<StagedIdentity>> StagedIdentity::Start(
    const TlsFiles& files) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(
      tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/satlab-tls.XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("tls: cannot make a private directory ", pattern, ": ",
                     std::strerror(errno)));
  }
  std::unique_ptr<StagedIdentity> staged(new StagedIdentity(files, pattern));
  {
    absl::MutexLock lock(&staged->mu_);
    if (absl::Status s = staged->RefreshLocked(); !s.ok()) return s;
    staged->updates_ = 0;
  }
  StagedIdentity* raw = staged.get();
  staged->thread_ = std::thread([raw] {
    while (!raw->stop_.WaitForNotificationWithTimeout(
        raw->files_.refresh_interval)) {
      // A pair that does not load keeps the previous one; the next round
      // (or a SIGHUP) tries again.
      raw->Refresh().IgnoreError();
    }
  });
  return staged;
}

StagedIdentity::~StagedIdentity() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::Status StagedIdentity::Refresh() {
  absl::MutexLock lock(&mu_);
  return RefreshLocked();
}

int64_t StagedIdentity::updates() const {
  absl::MutexLock lock(&mu_);
  return updates_;
}

absl::Status StagedIdentity::RefreshLocked() {
  auto cert = ReadPemFile(files_.cert_file, "--tls_cert_file");
  if (!cert.ok()) return cert.status();
  auto key = ReadPemFile(files_.key_file, "--tls_key_file");
  if (!key.ok()) return key.status();
  std::string contents = absl::StrCat(*key, "\n", *cert);
  if (contents == staged_) return absl::OkStatus();
  if (absl::Status s = CheckPemPair(*cert, *key, files_, "--tls_"); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteAtomically(path_, contents); !s.ok()) return s;
  staged_ = std::move(contents);
  ++updates_;
  return absl::OkStatus();
}

}  // namespace satlab::tls
