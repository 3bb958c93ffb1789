// Who a call is and what its tenant may still do (issue 13,
// docs/security.md). The gRPC-facing half of authentication: reads the
// call's `authorization: Bearer <key>` metadata or its mTLS peer
// certificate, checks the key against the KeyRing (server/auth), and turns
// the answer into a plain core::Identity; the core's TenantScope then maps
// the caller's ids. Also keeps each tenant's quota counters.
//
// Without keys and certificate mappings authentication is off: every call
// is core::ImplicitAdmin() (loopback dev mode, the behaviour before
// tenants existed). Health is never asked for credentials (it is gRPC's own
// service).
//
// Thread-safe.
#ifndef SATLAB_SERVER_SERVICE_TENANCY_H_
#define SATLAB_SERVER_SERVICE_TENANCY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/auth/api_keys.h"
#include "server/core/network_core.h"
#include "server/core/tenant_scope.h"

namespace satlab::service {

struct AuthOptions {
  // Hashed API keys (--api_keys_file, SATLAB_API_KEYS).
  auth::KeyRing keys;
  // Client-certificate names -> identity, under mTLS: a name is matched
  // against the peer's x509 common name and subject alternative names as
  // gRPC's AuthContext reports them (--cert_tenants).
  std::vector<std::pair<std::string, core::Identity>> cert_identities;
  // Every tenant's quotas unless its keys-file entry overrides them.
  auth::Quotas quotas;

  bool enabled() const { return !keys.empty() || !cert_identities.empty(); }
};

// "name=tenant:role,..." (--cert_tenants) -> AuthOptions::cert_identities.
absl::StatusOr<std::vector<std::pair<std::string, core::Identity>>>
ParseCertTenants(absl::string_view spec);

class Tenancy {
 public:
  // `core` must outlive the tenancy.
  Tenancy(AuthOptions options, core::NetworkCore* core);
  Tenancy(const Tenancy&) = delete;
  Tenancy& operator=(const Tenancy&) = delete;

  bool enabled() const { return options_.enabled(); }

  // The caller of `ctx`: its bearer key, else its client certificate;
  // UNAUTHENTICATED when neither names a configured identity (a wrong key
  // is never retried as a certificate). Then charges one request to the
  // tenant's rate (RESOURCE_EXHAUSTED naming requests_per_second).
  absl::StatusOr<core::Identity> Admit(const grpc::ServerContextBase& ctx);
  // The identity of an `Authorization` header value ("Bearer <key>"), as
  // the HTTP port checks it; UNAUTHENTICATED otherwise.
  absl::StatusOr<core::Identity> FromAuthorization(
      absl::string_view header) const;

  // A tenant's hold on one unit of a counted quota (streams, running
  // experiments) until it is destroyed. Empty (holds nothing) for admins.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();

   private:
    friend class Tenancy;
    struct State;
    std::shared_ptr<State> state_;
    int64_t State::*counter_ = nullptr;
  };
  // RESOURCE_EXHAUSTED naming the quota when the tenant is at its limit.
  absl::StatusOr<Lease> OpenStream(const core::Identity& who);
  absl::StatusOr<Lease> StartExperiment(const core::Identity& who);

  // Runs `create` (a CreateNetwork or ImportNetwork of a network with
  // `parameters` parameters) only if the caller's tenant stays within its
  // networks and parameters quotas; one create per tenant at a time, so two
  // cannot both pass the check. RESOURCE_EXHAUSTED naming the quota.
  absl::Status CreateWithinQuota(const core::TenantScope& scope,
                                 int64_t parameters,
                                 absl::FunctionRef<absl::Status()> create);

  // The quotas that apply to `tenant`.
  auth::Quotas QuotasOf(absl::string_view tenant) const;

 private:
  std::shared_ptr<Lease::State> StateOf(absl::string_view tenant);
  absl::StatusOr<Lease> Take(const core::Identity& who,
                             int64_t Lease::State::*counter, int64_t limit,
                             absl::string_view quota);
  absl::Status ChargeRequest(const core::Identity& who);

  const AuthOptions options_;
  core::NetworkCore* const core_;
  // Per-tenant quota overrides from the keys file.
  absl::flat_hash_map<std::string, auth::Quotas> quotas_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Lease::State>> states_
      ABSL_GUARDED_BY(mu_);
};

// A streaming call's caller, admitted (Tenancy::Admit) and holding its
// tenant's stream quota (and, for RunExperiment, its running-experiments
// quota) until the reactor is destroyed.
struct StreamAdmission {
  core::TenantScope scope;
  Tenancy::Lease stream;
  Tenancy::Lease experiment;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_TENANCY_H_
