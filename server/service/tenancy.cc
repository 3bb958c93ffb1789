#include "server/service/tenancy.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace satlab::service {

struct Tenancy::Lease::State {
  absl::Mutex mu;
  int64_t streams ABSL_GUARDED_BY(mu) = 0;
  int64_t running_experiments ABSL_GUARDED_BY(mu) = 0;
  double tokens ABSL_GUARDED_BY(mu) = -1;  // < 0: not yet filled
  absl::Time refilled ABSL_GUARDED_BY(mu);
  // Held across a create's quota check and the create itself.
  absl::Mutex create_mu;
};

namespace {

constexpr absl::string_view kBearer = "bearer ";

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat(
      why,
      "; send `authorization: Bearer <api key>` metadata or a client "
      "certificate the server maps to a tenant"));
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, core::Identity>>>
ParseCertTenants(absl::string_view spec) {
  std::vector<std::pair<std::string, core::Identity>> out;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts =
        absl::StrSplit(absl::StripAsciiWhitespace(item), ':');
    std::pair<absl::string_view, absl::string_view> name_tenant =
        absl::StrSplit(parts[0], absl::MaxSplits('=', 1));
    if (parts.size() != 2 || name_tenant.first.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cert_tenants: expected entries <certificate name>=<tenant>:"
          "<user|admin> separated by commas, got \"",
          absl::CHexEscape(item), "\""));
    }
    if (absl::Status s =
            core::ValidateTenantName(name_tenant.second, "cert_tenants");
        !s.ok()) {
      return s;
    }
    auto role = auth::ParseRole(parts[1], "cert_tenants: role");
    if (!role.ok()) return role.status();
    out.emplace_back(std::string(name_tenant.first),
                     core::Identity{std::string(name_tenant.second), *role});
  }
  return out;
}

Tenancy::Lease& Tenancy::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    this->~Lease();
    state_ = std::move(other.state_);
    counter_ = other.counter_;
    other.state_ = nullptr;
  }
  return *this;
}

Tenancy::Lease::~Lease() {
  if (state_ == nullptr) return;
  absl::MutexLock lock(&state_->mu);
  --((*state_).*counter_);
  state_ = nullptr;
}

Tenancy::Tenancy(AuthOptions options, core::NetworkCore* core)
    : options_(std::move(options)), core_(core) {
  for (const auth::KeyEntry& entry : options_.keys.entries()) {
    auto [it, inserted] =
        quotas_.try_emplace(entry.identity.tenant, options_.quotas);
    // The first entry of a tenant that overrides a quota sets it.
    const auth::Quotas overridden = entry.quotas.Apply(options_.quotas);
    if (inserted) it->second = overridden;
  }
}

auth::Quotas Tenancy::QuotasOf(absl::string_view tenant) const {
  auto it = quotas_.find(tenant);
  return it != quotas_.end() ? it->second : options_.quotas;
}

absl::StatusOr<core::Identity> Tenancy::FromAuthorization(
    absl::string_view header) const {
  if (header.size() <= kBearer.size() ||
      !absl::StartsWithIgnoreCase(header, kBearer)) {
    return Unauthenticated(
        "authorization: expected \"Bearer <api key>\", got another scheme");
  }
  const auth::KeyEntry* entry = options_.keys.Verify(
      absl::StripAsciiWhitespace(header.substr(kBearer.size())));
  if (entry == nullptr) {
    return Unauthenticated("authorization: the API key is not valid");
  }
  return entry->identity;
}

absl::StatusOr<core::Identity> Tenancy::Admit(
    const grpc::ServerContextBase& ctx) {
  if (!enabled()) return core::ImplicitAdmin();
  absl::StatusOr<core::Identity> who = Unauthenticated("missing credentials");
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    who = FromAuthorization(
        absl::string_view(it->second.data(), it->second.size()));
  } else if (!options_.cert_identities.empty()) {
    std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
    if (auth != nullptr && auth->IsPeerAuthenticated()) {
      for (const char* property :
           {"x509_common_name", "x509_subject_alternative_name"}) {
        for (const grpc::string_ref& value :
             auth->FindPropertyValues(property)) {
          const absl::string_view name(value.data(), value.size());
          for (const auto& [cert_name, identity] : options_.cert_identities) {
            if (cert_name == name && !who.ok()) who = identity;
          }
        }
      }
    }
  }
  if (!who.ok()) return who;
  if (absl::Status s = ChargeRequest(*who); !s.ok()) return s;
  return who;
}

std::shared_ptr<Tenancy::Lease::State> Tenancy::StateOf(
    absl::string_view tenant) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Lease::State>& state = states_[tenant];
  if (state == nullptr) state = std::make_shared<Lease::State>();
  return state;
}

absl::Status Tenancy::ChargeRequest(const core::Identity& who) {
  if (who.role == core::Role::kAdmin) return absl::OkStatus();
  const auth::Quotas quotas = QuotasOf(who.tenant);
  if (quotas.requests_per_second <= 0) return absl::OkStatus();
  const double burst = quotas.request_burst > 0
                           ? quotas.request_burst
                           : std::max(1.0, quotas.requests_per_second);
  std::shared_ptr<Lease::State> state = StateOf(who.tenant);
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&state->mu);
  // Token bucket: `burst` tokens at most, refilled at the rate.
  if (state->tokens < 0) {
    state->tokens = burst;
  } else {
    state->tokens = std::min(
        burst, state->tokens + absl::ToDoubleSeconds(now - state->refilled) *
                                   quotas.requests_per_second);
  }
  state->refilled = now;
  if (state->tokens < 1) {
    return absl::ResourceExhaustedError(
        absl::StrCat("quota requests_per_second: tenant ", who.tenant,
                     " may make ", quotas.requests_per_second,
                     " requests per second (burst ", burst, "); retry later"));
  }
  state->tokens -= 1;
  return absl::OkStatus();
}

absl::StatusOr<Tenancy::Lease> Tenancy::Take(const core::Identity& who,
                                             int64_t Lease::State::*counter,
                                             int64_t limit,
                                             absl::string_view quota) {
  Lease lease;
  if (who.role == core::Role::kAdmin || limit <= 0) return lease;
  std::shared_ptr<Lease::State> state = StateOf(who.tenant);
  absl::MutexLock lock(&state->mu);
  if ((*state).*counter >= limit) {
    return absl::ResourceExhaustedError(
        absl::StrCat("quota ", quota, ": tenant ", who.tenant, " has ", limit,
                     " open, its quota is ", limit, "; end one first"));
  }
  ++((*state).*counter);
  lease.state_ = std::move(state);
  lease.counter_ = counter;
  return lease;
}

absl::StatusOr<Tenancy::Lease> Tenancy::OpenStream(const core::Identity& who) {
  return Take(who, &Lease::State::streams, QuotasOf(who.tenant).streams,
              "streams");
}

absl::StatusOr<Tenancy::Lease> Tenancy::StartExperiment(
    const core::Identity& who) {
  return Take(who, &Lease::State::running_experiments,
              QuotasOf(who.tenant).running_experiments, "experiments");
}

absl::Status Tenancy::CreateWithinQuota(
    const core::TenantScope& scope, int64_t parameters,
    absl::FunctionRef<absl::Status()> create) {
  const core::Identity& who = scope.identity();
  const auth::Quotas quotas = QuotasOf(who.tenant);
  if (scope.admin() || (quotas.networks <= 0 && quotas.parameters <= 0)) {
    return create();
  }
  std::shared_ptr<Lease::State> state = StateOf(who.tenant);
  absl::MutexLock create_lock(&state->create_mu);
  // The tenant's networks are the contiguous run of stored ids after its
  // prefix.
  int64_t networks = 0;
  int64_t held_parameters = 0;
  std::string after = scope.prefix();
  for (bool more = true; more;) {
    constexpr int kPage = 1000;
    auto page = core_->List(after, kPage);
    if (!page.ok()) return page.status();
    more = static_cast<int>(page->size()) == kPage;
    for (const core::NetworkInfo& info : *page) {
      if (!scope.Sees(info.id)) {
        more = false;
        break;
      }
      ++networks;
      held_parameters += info.parameter_count;
      after = info.id;
    }
  }
  if (quotas.networks > 0 && networks + 1 > quotas.networks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota networks: tenant ", who.tenant, " holds ", networks,
        " networks, its quota is ", quotas.networks, "; delete one first"));
  }
  if (quotas.parameters > 0 &&
      held_parameters + parameters > quotas.parameters) {
    return absl::ResourceExhaustedError(
        absl::StrCat("quota parameters: tenant ", who.tenant, " holds ",
                     held_parameters, " parameters and this network has ",
                     parameters, ", its quota is ", quotas.parameters));
  }
  return create();
}

}  // namespace satlab::service
