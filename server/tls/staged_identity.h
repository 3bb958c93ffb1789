// What the gRPC port's certificate watcher reads: a private copy of the key
// and certificate chain as ONE PEM file (key first), replaced by a rename
// only after OpenSSL has checked that the key belongs to the certificate.
// gRPC 1.51's FileWatcherCertificateProvider reads the key and the
// certificate files separately and uses whatever pair it finds: a rotation
// caught half-way (new key, old certificate) would fail every new handshake
// until it completes. Pointed at this one file for both, it only ever sees
// consistent pairs (OpenSSL's PEM readers skip the block they do not want).
// No gRPC here.
#ifndef SATLAB_SERVER_TLS_STAGED_IDENTITY_H_
#define SATLAB_SERVER_TLS_STAGED_IDENTITY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "server/tls/tls_files.h"

namespace satlab::tls {

class StagedIdentity {
 public:
  // Stages files.cert_file + files.key_file into a new private directory
  // (mode 0700 under $TMPDIR, else /tmp) and compares them again every
  // files.refresh_interval on a thread of its own. INVALID_ARGUMENT naming
  // the file if they do not load; INTERNAL if the copy cannot be written.
  static absl::StatusOr<std::unique_ptr<StagedIdentity>> Start(
      const TlsFiles& files);
  // Stops the thread and removes the private directory.
  ~StagedIdentity();

  StagedIdentity(const StagedIdentity&) = delete;
  StagedIdentity& operator=(const StagedIdentity&) = delete;

  // The combined PEM file: give it to gRPC as both key and certificate.
  const std::string& path() const { return path_; }

  // Compares the files now (SIGHUP) and stages them if they changed and
  // match. OK when unchanged or staged; otherwise the error, and the
  // previous pair stays.
  absl::Status Refresh() ABSL_LOCKS_EXCLUDED(mu_);

  // Changed pairs staged since Start.
  int64_t updates() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  StagedIdentity(const TlsFiles& files, std::string dir);
  absl::Status RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsFiles files_;
  const std::string dir_;
  const std::string path_;
  mutable absl::Mutex mu_;
  // The cert and key contents last staged.
  std::string staged_ ABSL_GUARDED_BY(mu_);
  int64_t updates_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace satlab::tls

#endif  // SATLAB_SERVER_TLS_STAGED_IDENTITY_H_
