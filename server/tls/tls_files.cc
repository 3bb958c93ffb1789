#include "server/tls/tls_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace satlab::tls {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;
using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no PEM data";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

}  // namespace

absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        absl::string_view field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": cannot open ", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string HostOf(absl::string_view address) {
  if (absl::StartsWith(address, "[")) {
    const size_t close = address.find(']');
    if (close != absl::string_view::npos) {
      return std::string(address.substr(1, close - 1));
    }
  }
  const size_t colon = address.rfind(':');
  // More than one colon without brackets: a bare IPv6 address.
  if (colon == absl::string_view::npos || address.find(':') != colon) {
    return std::string(address);
  }
  return std::string(address.substr(0, colon));
}

bool IsLoopbackHost(absl::string_view host) {
  const std::string lower = absl::AsciiStrToLower(host);
  return lower == "localhost" || lower == "::1" ||
         absl::StartsWith(lower, "127.");
}

absl::Status CheckPemPair(absl::string_view cert_pem, absl::string_view key_pem,
                          const TlsFiles& files,
                          absl::string_view flag_prefix) {
  Bio cert_bio(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())),
      BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag_prefix, "cert_file: expected a PEM certificate in ",
                     files.cert_file, ", got: ", OpenSslError()));
  }
  Bio key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())),
              BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr),
      EVP_PKEY_free);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag_prefix, "key_file: expected a PEM private key in ",
                     files.key_file, ", got: ", OpenSslError()));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        flag_prefix, "key_file: the key in ", files.key_file,
        " does not belong to the certificate in ", files.cert_file));
  }
  return absl::OkStatus();
}

absl::Status CheckTlsFiles(const TlsFiles& files,
                           absl::string_view flag_prefix) {
  auto cert =
      ReadPemFile(files.cert_file, absl::StrCat(flag_prefix, "cert_file"));
  if (!cert.ok()) return cert.status();
  auto key = ReadPemFile(files.key_file, absl::StrCat(flag_prefix, "key_file"));
  if (!key.ok()) return key.status();
  if (absl::Status s = CheckPemPair(*cert, *key, files, flag_prefix); !s.ok()) {
    return s;
  }
  if (!files.client_ca_file.empty()) {
    File ca_file(std::fopen(files.client_ca_file.c_str(), "r"));
    if (ca_file == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag_prefix, "client_ca_file: cannot open ", files.client_ca_file));
    }
    std::unique_ptr<X509, decltype(&X509_free)> ca(
        PEM_read_X509(ca_file.get(), nullptr, nullptr, nullptr), X509_free);
    if (ca == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag_prefix, "client_ca_file: expected PEM CA certificates in ",
          files.client_ca_file, ", got: ", OpenSslError()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTransport(absl::string_view what,
                            absl::string_view listen_address,
                            const TlsFiles& files, bool plaintext_explicit,
                            absl::string_view flag_prefix) {
  if (files.enabled()) {
    if (plaintext_explicit) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": --plaintext and ", flag_prefix, "cert_file/", flag_prefix,
          "key_file: expected one of them, got both"));
    }
    if (files.cert_file.empty() || files.key_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": ", flag_prefix, "cert_file and ", flag_prefix,
          "key_file: expected both, got only ",
          files.cert_file.empty() ? "the key" : "the certificate"));
    }
    if (files.refresh_interval <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": tls refresh interval: expected > 0, got ",
                       absl::FormatDuration(files.refresh_interval)));
    }
    return CheckTlsFiles(files, flag_prefix);
  }
  if (!files.client_ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", flag_prefix, "client_ca_file needs ", flag_prefix,
        "cert_file and ", flag_prefix, "key_file (mutual TLS is TLS)"));
  }
  const std::string host = HostOf(listen_address);
  if (!plaintext_explicit && !IsLoopbackHost(host)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": refusing to serve plaintext on non-loopback address ",
        listen_address, ": give ", flag_prefix, "cert_file and ", flag_prefix,
        "key_file for TLS, or --plaintext to serve plaintext there on "
        "purpose"));
  }
  return absl::OkStatus();
}

}  // namespace satlab::tls
