#include "server/auth/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace satlab::auth {
namespace {

std::array<uint8_t, kHashBytes> Mac(const std::array<uint8_t, kSaltBytes>& salt,
                                    absl::string_view key) {
  std::array<uint8_t, kHashBytes> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()),
       reinterpret_cast<const unsigned char*>(key.data()), key.size(),
       out.data(), &len);
  return out;
}

template <size_t N>
absl::Status FromHex(absl::string_view hex, std::array<uint8_t, N>* out,
                     absl::string_view field) {
  const bool hex_digits = std::all_of(
      hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); });
  if (hex.size() != 2 * N || !hex_digits) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", 2 * N,
                                                   " hex digits, got ",
                                                   hex.size(), " characters"));
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  std::copy(bytes.begin(), bytes.end(), out->begin());
  return absl::OkStatus();
}

template <size_t N>
std::string ToHex(const std::array<uint8_t, N>& bytes) {
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

absl::Status ParseOverride(absl::string_view field, QuotaOverrides* q,
                           absl::string_view where) {
  std::pair<absl::string_view, absl::string_view> kv =
      absl::StrSplit(field, absl::MaxSplits('=', 1));
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     ": expected networks=N, parameters=N, streams=N, "
                     "experiments=N, requests_per_second=R or request_burst=B "
                     "(N, R, B >= 0), got \"",
                     absl::CHexEscape(field), "\""));
  };
  int64_t n = 0;
  double r = 0;
  if (kv.first == "requests_per_second" || kv.first == "request_burst") {
    if (!absl::SimpleAtod(kv.second, &r) || !(r >= 0)) return bad();
    (kv.first == "requests_per_second" ? q->requests_per_second
                                       : q->request_burst) = r;
    return absl::OkStatus();
  }
  if (!absl::SimpleAtoi(kv.second, &n) || n < 0) return bad();
  if (kv.first == "networks") {
    q->networks = n;
  } else if (kv.first == "parameters") {
    q->parameters = n;
  } else if (kv.first == "streams") {
    q->streams = n;
  } else if (kv.first == "experiments") {
    q->running_experiments = n;
  } else {
    return bad();
  }
  return absl::OkStatus();
}

}  // namespace

Quotas QuotaOverrides::Apply(Quotas base) const {
  if (networks) base.networks = *networks;
  if (parameters) base.parameters = *parameters;
  if (streams) base.streams = *streams;
  if (running_experiments) base.running_experiments = *running_experiments;
  if (requests_per_second) base.requests_per_second = *requests_per_second;
  if (request_burst) base.request_burst = *request_burst;
  return base;
}

absl::StatusOr<core::Role> ParseRole(absl::string_view role,
                                     absl::string_view field) {
  if (role == "user") return core::Role::kUser;
  if (role == "admin") return core::Role::kAdmin;
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": expected user or admin, got \"", absl::CHexEscape(role), "\""));
}

absl::StatusOr<KeyEntry> HashKey(absl::string_view key,
                                 const core::Identity& identity) {
  if (key.size() < kMinKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "api key: expected at least ", kMinKeyBytes,
        " characters of a random token (e.g. openssl rand -hex 32), got ",
        key.size()));
  }
  if (absl::Status s = core::ValidateTenantName(identity.tenant, "tenant");
      !s.ok()) {
    return s;
  }
  KeyEntry entry;
  entry.identity = identity;
  if (RAND_bytes(entry.salt.data(), static_cast<int>(entry.salt.size())) != 1) {
    return absl::InternalError("api key: the random salt could not be made");
  }
  entry.hash = Mac(entry.salt, key);
  return entry;
}

std::string FormatKeyLine(const KeyEntry& entry) {
  return absl::StrCat(
      entry.identity.tenant, " ",
      entry.identity.role == core::Role::kAdmin ? "admin" : "user", " ",
      ToHex(entry.salt), " ", ToHex(entry.hash));
}

absl::Status KeyRing::AddFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("api_keys_file: cannot open \"", path, "\" for reading"));
  }
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (absl::Status s = AddLine(line, absl::StrCat(path, ":", n)); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status KeyRing::AddLine(absl::string_view line, absl::string_view where) {
  line = line.substr(0, line.find('#'));
  std::vector<absl::string_view> fields =
      absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
  if (fields.empty()) return absl::OkStatus();
  if (fields.size() < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     ": expected <tenant> <user|admin> <salt hex> <hash hex> "
                     "[quota=value ...], got ",
                     fields.size(), " fields"));
  }
  KeyEntry entry;
  entry.identity.tenant = std::string(fields[0]);
  if (absl::Status s = core::ValidateTenantName(fields[0], where); !s.ok()) {
    return s;
  }
  auto role = ParseRole(fields[1], where);
  if (!role.ok()) return role.status();
  entry.identity.role = *role;
  if (absl::Status s = FromHex(fields[2], &entry.salt, where); !s.ok()) {
    return s;
  }
  if (absl::Status s = FromHex(fields[3], &entry.hash, where); !s.ok()) {
    return s;
  }
  for (size_t i = 4; i < fields.size(); ++i) {
    if (absl::Status s = ParseOverride(fields[i], &entry.quotas, where);
        !s.ok()) {
      return s;
    }
  }
  entries_.push_back(std::move(entry));
  return absl::OkStatus();
}

absl::Status KeyRing::AddPlaintext(absl::string_view entries) {
  for (absl::string_view item :
       absl::StrSplit(entries, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    std::vector<absl::string_view> parts =
        absl::StrSplit(item, absl::MaxSplits(':', 2));
    if (parts.size() != 3) {
      return absl::InvalidArgumentError(
          "api_keys: expected entries tenant:user|admin:key separated by "
          "commas, got an entry without two ':'");
    }
    auto role = ParseRole(parts[1], "api_keys: role");
    if (!role.ok()) return role.status();
    auto entry =
        HashKey(parts[2], core::Identity{std::string(parts[0]), *role});
    if (!entry.ok()) {
      return absl::Status(entry.status().code(),
                          absl::StrCat("api_keys: ", entry.status().message()));
    }
    entries_.push_back(*std::move(entry));
  }
  return absl::OkStatus();
}

const KeyEntry* KeyRing::Verify(absl::string_view key) const {
  // Every entry is hashed and compared; the match is selected with a mask,
  // not a branch, so neither the number of HMACs nor the comparisons depend
  // on which entry (if any) matched.
  size_t found = 0;
  size_t index = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const std::array<uint8_t, kHashBytes> mac = Mac(entries_[i].salt, key);
    const size_t equal = static_cast<size_t>(
        CRYPTO_memcmp(mac.data(), entries_[i].hash.data(), kHashBytes) == 0);
    const size_t mask = size_t{0} - (equal & (found ^ 1));
    index = (index & ~mask) | (i & mask);
    found |= equal;
  }
  return found != 0 ? &entries_[index] : nullptr;
}

}  // namespace satlab::auth
