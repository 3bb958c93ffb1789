#include "server/tls/http_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/tls/tls_files.h"

namespace satlab::tls {
namespace {

using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;

Bio MemoryBio(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())),
             BIO_free);
}

absl::Status Invalid(absl::string_view what) {
  ERR_clear_error();
  return absl::InvalidArgumentError(std::string(what));
}

// An SSL_CTX serving `cert` (chain), `key` and, when `ca` is not empty,
// requiring client certificates signed by `ca`.
absl::StatusOr<std::shared_ptr<SSL_CTX>> BuildContext(const TlsFiles& files,
                                                      const std::string& cert,
                                                      const std::string& key,
                                                      const std::string& ca) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (ctx == nullptr) return Invalid("http tls: SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // A peer that closes without close_notify reads as an ordinary end of
  // stream, as on a plaintext socket (httplib then ends the connection, and
  // an evicted one still gets its 503).
  SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  Bio cert_bio = MemoryBio(cert);
  X509* leaf = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr);
  if (leaf == nullptr || SSL_CTX_use_certificate(ctx.get(), leaf) != 1) {
    X509_free(leaf);
    return Invalid(absl::StrCat("http tls: cert_file ", files.cert_file,
                                ": expected a PEM certificate"));
  }
  X509_free(leaf);
  // The rest of the file is the chain up to (not including) the root.
  while (X509* extra =
             PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) {
    SSL_CTX_add0_chain_cert(ctx.get(), extra);
  }
  ERR_clear_error();
  Bio key_bio = MemoryBio(key);
  EVP_PKEY* pkey =
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  const bool key_ok =
      pkey != nullptr && SSL_CTX_use_PrivateKey(ctx.get(), pkey) == 1;
  EVP_PKEY_free(pkey);
  if (!key_ok || SSL_CTX_check_private_key(ctx.get()) != 1) {
    return Invalid(absl::StrCat("http tls: key_file ", files.key_file,
                                ": expected the PEM private key of ",
                                files.cert_file));
  }
  if (!files.client_ca_file.empty()) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    Bio ca_bio = MemoryBio(ca);
    int added = 0;
    while (X509* ca_cert =
               PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, ca_cert);
      X509_free(ca_cert);
      ++added;
    }
    ERR_clear_error();
    if (added == 0) {
      return Invalid(absl::StrCat("http tls: client_ca_file ",
                                  files.client_ca_file,
                                  ": expected PEM CA certificates"));
    }
    SSL_CTX_set_verify(
        ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerTlsContext>> ServerTlsContext::Create(
    const TlsFiles& files) {
  std::unique_ptr<ServerTlsContext> tls(new ServerTlsContext(files));
  absl::MutexLock lock(&tls->mu_);
  if (absl::Status s = tls->ReloadLocked(); !s.ok()) return s;
  tls->reloads_ = 0;
  return tls;
}

absl::Status ServerTlsContext::ReloadLocked() {
  next_check_ = absl::Now() + files_.refresh_interval;
  auto cert = ReadPemFile(files_.cert_file, "cert_file");
  auto key = ReadPemFile(files_.key_file, "key_file");
  absl::StatusOr<std::string> ca = std::string();
  if (!files_.client_ca_file.empty()) {
    ca = ReadPemFile(files_.client_ca_file, "client_ca_file");
  }
  absl::Status s = !cert.ok()  ? cert.status()
                   : !key.ok() ? key.status()
                               : ca.status();
  if (s.ok()) {
    std::string contents =
        absl::StrCat(cert->size(), ":", *cert, key->size(), ":", *key, *ca);
    if (contents == loaded_) return absl::OkStatus();
    auto ctx = BuildContext(files_, *cert, *key, *ca);
    if (ctx.ok()) {
      ctx_ = *std::move(ctx);
      loaded_ = std::move(contents);
      ++reloads_;
    }
    s = ctx.status();
  }
  last_error_ = s;
  return s;
}

SSL* ServerTlsContext::NewSsl() {
  std::shared_ptr<SSL_CTX> ctx;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Now() >= next_check_) ReloadLocked().IgnoreError();
    ctx = ctx_;
  }
  // SSL_new takes its own reference: a reload cannot free it under us.
  return SSL_new(ctx.get());
}

absl::Status ServerTlsContext::Reload() {
  absl::MutexLock lock(&mu_);
  return ReloadLocked();
}

int64_t ServerTlsContext::reloads() const {
  absl::MutexLock lock(&mu_);
  return reloads_;
}

absl::Status ServerTlsContext::last_error() const {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

}  // namespace satlab::tls
