// TLS for the home-made HTTP side port (server/http), with OpenSSL: one
// SSL_CTX built from the certificate, key and (optional) client CA files,
// rebuilt when the files' contents change. The files are compared at most
// once per refresh interval, when a connection arrives, and at once on
// Reload() (SIGHUP). A change that does not load (a half-written key, a
// key that does not match) keeps the previous context and is reported by
// last_error(); connections already open keep the context they started
// with.
#ifndef SATLAB_SERVER_TLS_HTTP_TLS_H_
#define SATLAB_SERVER_TLS_HTTP_TLS_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/tls/tls_files.h"

namespace satlab::tls {

class ServerTlsContext {
 public:
  // INVALID_ARGUMENT naming the file when the files do not load.
  static absl::StatusOr<std::unique_ptr<ServerTlsContext>> Create(
      const TlsFiles& files);

  // A new server-side SSL for one connection (the caller frees it with
  // SSL_free), from the current context after a due check of the files.
  // Null only if OpenSSL cannot allocate.
  SSL* NewSsl() ABSL_LOCKS_EXCLUDED(mu_);

  // Compares the files now and rebuilds the context if they changed. OK
  // when nothing changed or the new files loaded; the error otherwise (the
  // previous context stays).
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);

  // Times a changed set of files was loaded since Create.
  int64_t reloads() const ABSL_LOCKS_EXCLUDED(mu_);
  // The last failed reload's error (OK if the last reload succeeded).
  absl::Status last_error() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit ServerTlsContext(const TlsFiles& files) : files_(files) {}
  absl::Status ReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsFiles files_;
  mutable absl::Mutex mu_;
  std::shared_ptr<SSL_CTX> ctx_ ABSL_GUARDED_BY(mu_);
  // The files' contents the context was built from.
  std::string loaded_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
  int64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace satlab::tls

#endif  // SATLAB_SERVER_TLS_HTTP_TLS_H_
