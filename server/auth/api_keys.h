// API keys (issue 13): only salted hashes, in memory and on disk.
//
// An entry is one line of the keys file (--api_keys_file):
//   <tenant> <user|admin> <salt: 32 hex> <HMAC-SHA256(salt, key): 64 hex>
//       [networks=N] [parameters=N] [streams=N] [experiments=N]
//       [requests_per_second=R] [request_burst=B]
// (the optional fields override the default quotas for that tenant). `#`
// starts a comment. `satlab-server --hash_api_key --tenant=T --role=R`
// reads a key on stdin and prints its line. Keys given in plaintext (the
// environment, SATLAB_API_KEYS) are hashed as they are loaded and the
// plaintext dropped.
//
// Why one HMAC and not a slow KDF: keys are random tokens of at least 128
// bits (the tool refuses shorter ones), so there is nothing to brute-force;
// the salt keeps equal keys' entries apart and a stolen file from being a
// lookup table. A slow KDF would cost every call milliseconds per entry.
//
// Verify computes the HMAC of the presented key under EVERY entry's salt
// and compares each in constant time, without stopping at a match, so the
// time taken does not depend on which key (if any) matched.
#ifndef SATLAB_SERVER_AUTH_API_KEYS_H_
#define SATLAB_SERVER_AUTH_API_KEYS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/tenant_scope.h"

namespace satlab::auth {

// Per-tenant limits; 0 means unlimited. Admins are not limited.
struct Quotas {
  int64_t networks = 0;             // networks held
  int64_t parameters = 0;           // parameters over all its networks
  int64_t streams = 0;              // open streaming calls
  int64_t running_experiments = 0;  // RunExperiment calls running
  double requests_per_second = 0;   // token bucket refill rate
  double request_burst = 0;         // bucket size (0: max(1, rate))
};

// A keys-file entry's overrides of the default quotas.
struct QuotaOverrides {
  std::optional<int64_t> networks;
  std::optional<int64_t> parameters;
  std::optional<int64_t> streams;
  std::optional<int64_t> running_experiments;
  std::optional<double> requests_per_second;
  std::optional<double> request_burst;
  Quotas Apply(Quotas base) const;
};

inline constexpr int kSaltBytes = 16;
inline constexpr int kHashBytes = 32;
// Shortest key HashKey accepts.
inline constexpr size_t kMinKeyBytes = 16;

struct KeyEntry {
  core::Identity identity;
  std::array<uint8_t, kSaltBytes> salt{};
  std::array<uint8_t, kHashBytes> hash{};
  QuotaOverrides quotas;
};

// A new entry for `key` with a fresh random salt. INVALID_ARGUMENT when the
// key is shorter than kMinKeyBytes or the tenant is not a valid name.
absl::StatusOr<KeyEntry> HashKey(absl::string_view key,
                                 const core::Identity& identity);
// The entry as a keys-file line (without quota overrides).
std::string FormatKeyLine(const KeyEntry& entry);
// "user" / "admin" -> Role; INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<core::Role> ParseRole(absl::string_view role,
                                     absl::string_view field);

class KeyRing {
 public:
  // Reads a keys file; INVALID_ARGUMENT naming `path:line` for a bad line,
  // NOT_FOUND when it cannot be opened.
  absl::Status AddFile(const std::string& path);
  // Parses one keys-file line; `where` names it in errors.
  absl::Status AddLine(absl::string_view line, absl::string_view where);
  // Plaintext entries "tenant:role:key" separated by commas (the
  // environment's SATLAB_API_KEYS), hashed now.
  absl::Status AddPlaintext(absl::string_view entries);
  void Add(KeyEntry entry) { entries_.push_back(std::move(entry)); }

  bool empty() const { return entries_.empty(); }
  const std::vector<KeyEntry>& entries() const { return entries_; }

  // The entry `key` belongs to, or null. Constant time in which entry
  // matched (see the file comment).
  const KeyEntry* Verify(absl::string_view key) const;

 private:
  std::vector<KeyEntry> entries_;
};

}  // namespace satlab::auth

#endif  // SATLAB_SERVER_AUTH_API_KEYS_H_
