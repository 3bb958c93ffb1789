// Who a call is, as the core sees it, and the one place where that identity
// meets a resource id (docs/security.md).
//
// Names are scoped per tenant: tenant "acme"'s network "foo" is kept in the
// store (and the core, the metrics hub and the stream registry) as
// "acme.foo". A tenant can only ever name ids under its own prefix, so
// another tenant's network is not merely refused but unaddressable: its
// GetNetwork answers exactly what an absent id answers (NOT_FOUND naming
// `networks/foo`), and creating "foo" in tenant B while A has a "foo"
// succeeds, revealing nothing. Client ids are [a-z0-9-] and tenant names
// too, so the separator '.' cannot be forged by a client id, and ownership
// persists with the record itself (no extra column: a restart keeps it).
//
// Admins (and the implicit caller of a server without keys) work in the
// unscoped namespace: they see every stored id as it is ("acme.foo") and
// may name one so.
#ifndef SATLAB_SERVER_CORE_TENANT_SCOPE_H_
#define SATLAB_SERVER_CORE_TENANT_SCOPE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace satlab::core {

enum class Role { kUser, kAdmin };

// A plain value: the transport layer (bearer key, client certificate)
// decides it, the core only reads it.
struct Identity {
  // [a-z][a-z0-9-]{0,31}; empty only for the implicit admin of a server
  // without authentication.
  std::string tenant;
  Role role = Role::kUser;
};

// The caller of a server without authentication (loopback dev mode): one
// implicit tenant that sees everything, as before tenants existed.
Identity ImplicitAdmin();

// INVALID_ARGUMENT naming `field` unless `tenant` is 1-32 of [a-z0-9-]
// starting with a letter.
absl::Status ValidateTenantName(absl::string_view tenant,
                                absl::string_view field);

// Separates a tenant from a client id in a stored id ("acme.foo").
inline constexpr char kTenantSeparator = '.';

// Maps one caller's ids to stored ids and back. Cheap to copy.
class TenantScope {
 public:
  explicit TenantScope(Identity identity);

  const Identity& identity() const { return identity_; }
  bool admin() const { return identity_.role == Role::kAdmin; }
  // Whether the caller may name another tenant's resource as
  // {tenant}.{id}: a configured admin. Not the implicit caller of a server
  // without keys, whose ids stay exactly as they were before tenants.
  bool names_tenants() const { return admin() && !identity_.tenant.empty(); }
  // "acme." for a user of tenant acme; empty for an admin.
  const std::string& prefix() const { return prefix_; }

  // The stored id of the caller's (already validated) id.
  std::string Stored(absl::string_view id) const;
  // Whether the caller may see the stored id.
  bool Sees(absl::string_view stored_id) const;
  // The id the caller knows a stored id by (call only when Sees).
  absl::string_view Shown(absl::string_view stored_id) const;
  // `status` with every stored resource name in its message written as the
  // caller knows it, so no message shows the scoping.
  absl::Status Unscoped(const absl::Status& status) const;

 private:
  Identity identity_;
  std::string prefix_;
};

}  // namespace satlab::core

#endif  // SATLAB_SERVER_CORE_TENANT_SCOPE_H_
