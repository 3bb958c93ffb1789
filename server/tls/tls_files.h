// Transport security shared by the gRPC port and the HTTP side port: which
// files hold the certificate, key and client CA, the plaintext policy
// (plaintext only when chosen explicitly, or on a loopback address), and
// an OpenSSL check that the files hold a usable certificate and key. No
// gRPC here: the HTTP port (server/http) uses it with OpenSSL directly.
#ifndef SATLAB_SERVER_TLS_TLS_FILES_H_
#define SATLAB_SERVER_TLS_TLS_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace satlab::tls {

struct TlsFiles {
  // PEM certificate chain and private key. Both set: the port serves TLS
  // only. Both empty: plaintext (see CheckTransport).
  std::string cert_file;
  std::string key_file;
  // PEM CA certificates. Set: mutual TLS, every client must present a
  // certificate signed by one of them (the handshake fails otherwise).
  std::string client_ca_file;
  // The files are read again this often; a changed certificate or key is
  // used for connections made after that (open connections keep theirs).
  absl::Duration refresh_interval = absl::Seconds(60);

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// The whole file at `path` (a certificate, key or CA bundle), or
// INVALID_ARGUMENT "<field>: cannot open <path>".
absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        absl::string_view field);

// The host of "host:port", "[v6]:port" or a bare host.
std::string HostOf(absl::string_view address);

// Whether `host` only reaches this machine: localhost, 127.0.0.0/8, ::1.
bool IsLoopbackHost(absl::string_view host);

// The plaintext policy and the files' consistency, for one port:
// INVALID_ARGUMENT naming the flags when TLS and plaintext are both chosen,
// when only one of cert/key is given, when a client CA comes without
// cert/key, when a file cannot be used, or when the port would serve
// plaintext on a non-loopback address without `plaintext_explicit`.
// `what` names the port in messages ("grpc", "http"); `flag_prefix` the
// flags ("--tls_", "--http_tls_").
absl::Status CheckTransport(absl::string_view what,
                            absl::string_view listen_address,
                            const TlsFiles& files, bool plaintext_explicit,
                            absl::string_view flag_prefix);

// Whether `cert` (PEM) begins with a certificate and `key` (PEM) holds its
// private key: INVALID_ARGUMENT naming files.cert_file / files.key_file and
// the flag otherwise.
absl::Status CheckPemPair(absl::string_view cert, absl::string_view key,
                          const TlsFiles& files, absl::string_view flag_prefix);

// Whether the files hold a PEM certificate and its private key (and, when
// set, PEM CA certificates): INVALID_ARGUMENT naming the file otherwise.
absl::Status CheckTlsFiles(const TlsFiles& files,
                           absl::string_view flag_prefix);

}  // namespace satlab::tls

#endif  // SATLAB_SERVER_TLS_TLS_FILES_H_
