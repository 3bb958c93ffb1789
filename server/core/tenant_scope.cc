#include "server/core/tenant_scope.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace satlab::core {

Identity ImplicitAdmin() { return Identity{"", Role::kAdmin}; }

absl::Status ValidateTenantName(absl::string_view tenant,
                                absl::string_view field) {
  constexpr size_t kMaxTenantBytes = 32;
  bool ok = !tenant.empty() && tenant.size() <= kMaxTenantBytes &&
            absl::ascii_islower(tenant[0]);
  for (char c : tenant) {
    ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-');
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected a tenant of 1-", kMaxTenantBytes,
                   " characters [a-z0-9-] starting with a letter, got \"",
                   absl::CHexEscape(tenant.substr(0, 64)), "\""));
}

TenantScope::TenantScope(Identity identity)
    : identity_(std::move(identity)),
      prefix_(identity_.role == Role::kAdmin
                  ? std::string()
                  : absl::StrCat(identity_.tenant,
                                 std::string(1, kTenantSeparator))) {}

std::string TenantScope::Stored(absl::string_view id) const {
  return absl::StrCat(prefix_, id);
}

bool TenantScope::Sees(absl::string_view stored_id) const {
  return absl::StartsWith(stored_id, prefix_);
}

absl::string_view TenantScope::Shown(absl::string_view stored_id) const {
  return stored_id.substr(prefix_.size());
}

absl::Status TenantScope::Unscoped(const absl::Status& status) const {
  if (status.ok() || prefix_.empty()) return status;
  std::string message = absl::StrReplaceAll(
      status.message(),
      {{absl::StrCat("networks/", prefix_), "networks/"},
       {absl::StrCat("experiments/", prefix_), "experiments/"}});
  return absl::Status(status.code(), message);
}

}  // namespace satlab::core
