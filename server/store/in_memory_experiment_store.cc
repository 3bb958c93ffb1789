#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <new>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/store/experiment_store.h"
#include "server/store/writer_lease.h"

namespace satlab::store {

absl::Status UnitHeldError(absl::string_view id, int32_t unit,
                           absl::string_view holder, absl::Time expires) {
  return absl::AbortedError(
      absl::StrCat("experiments/", id,
                   unit == kCoordinatorUnit ? std::string(" (its coordinator)")
                                            : absl::StrCat(" variant ", unit),
                   " is claimed by another replica (", holder, ", until ",
                   absl::FormatTime(expires, absl::UTCTimeZone()), ")"));
}

namespace {

absl::Status UnitNotFound(absl::string_view id, int32_t unit) {
  return absl::NotFoundError(
      absl::StrCat("experiments/", id, " has no unit ", unit,
                   " (it ended, was deleted or started over)"));
}

absl::Status ExperimentNotFound(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("experiments/", id, " not found"));
}

class InMemoryExperimentStore final : public ExperimentStore {
 public:
  absl::Status CreateExperiment(const ExperimentRecord& record) override {
    ExperimentRecord copy = record;
    absl::MutexLock lock(&mu_);
    if (!records_.emplace(record.id, std::move(copy)).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("experiments/", record.id, " already exists"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ExperimentRecord> LoadExperiment(
      absl::string_view id) const override {
    absl::ReaderMutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) return ExperimentNotFound(id);
    return it->second;
  }

  absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments(
      absl::string_view after, int limit) const override {
    absl::ReaderMutexLock lock(&mu_);
    std::vector<ExperimentRecord> page;
    for (auto it = records_.upper_bound(after);
         it != records_.end() && static_cast<int>(page.size()) < limit; ++it) {
      page.push_back(it->second);
    }
    return page;
  }

  absl::Status UpdateExperiment(const ExperimentRecord& record) override {
    ExperimentRecord copy = record;
    absl::MutexLock lock(&mu_);
    auto it = records_.find(record.id);
    if (it == records_.end() || it->second.create_time != record.create_time) {
      return ExperimentNotFound(record.id);
    }
    ExperimentRecord& r = it->second;
    r.status = copy.status;
    r.curves = std::move(copy.curves);
    r.summary = std::move(copy.summary);
    r.update_time = copy.update_time;
    return absl::OkStatus();
  }

  absl::Status DeleteExperiment(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) return ExperimentNotFound(id);
    records_.erase(it);
    return absl::OkStatus();
  }

  // Claims, on this process's clock (one replica: nobody else shares them).

  absl::Status OfferExperimentUnits(absl::string_view id, int variants,
                                    absl::string_view owner,
                                    absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    DeleteUnitsLocked(id);
    for (int32_t u = kCoordinatorUnit; u < variants; ++u) {
      ExperimentUnit& unit = units_[{std::string(id), u}];
      unit.experiment_id = std::string(id);
      unit.unit = u;
      if (u == kCoordinatorUnit) {
        unit.owner = std::string(owner);
        unit.expires = now + ttl;
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ExperimentUnit> ClaimExperimentUnit(
      absl::string_view id, int32_t unit, absl::string_view owner,
      absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    auto it = units_.find({std::string(id), unit});
    if (it == units_.end()) return UnitNotFound(id, unit);
    ExperimentUnit& u = it->second;
    if (u.owner != owner && u.expires > now) {
      return UnitHeldError(id, unit, u.owner, u.expires);
    }
    u.owner = std::string(owner);
    u.expires = now + ttl;
    return WithoutProgress(u);
  }

  absl::StatusOr<std::optional<ExperimentUnit>> ClaimFreeExperimentUnit(
      absl::string_view owner, absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    for (auto& [key, u] : units_) {
      if (u.done || u.expires > now) continue;
      u.owner = std::string(owner);
      u.expires = now + ttl;
      return std::optional<ExperimentUnit>(WithoutProgress(u));
    }
    return std::optional<ExperimentUnit>();
  }

  absl::Status ReportExperimentUnit(absl::string_view id, int32_t unit,
                                    absl::string_view owner, absl::Duration ttl,
                                    absl::string_view progress,
                                    bool done) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    std::string copy(progress);
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    auto it = units_.find({std::string(id), unit});
    if (it == units_.end()) return UnitNotFound(id, unit);
    ExperimentUnit& u = it->second;
    if (u.owner != owner) return UnitHeldError(id, unit, u.owner, u.expires);
    u.expires = now + ttl;
    u.progress = std::move(copy);
    u.done = done;
    return absl::OkStatus();
  }

  absl::Status ReleaseExperimentUnit(absl::string_view id, int32_t unit,
                                     absl::string_view owner) override {
    absl::MutexLock lock(&mu_);
    auto it = units_.find({std::string(id), unit});
    if (it != units_.end() && it->second.owner == owner) {
      it->second.expires = absl::InfinitePast();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<ExperimentUnit>> ListExperimentUnits(
      absl::string_view id) const override {
    absl::ReaderMutexLock lock(&mu_);
    std::vector<ExperimentUnit> out;
    for (auto it = units_.lower_bound({std::string(id), INT32_MIN});
         it != units_.end() && it->first.first == id; ++it) {
      out.push_back(it->second);
    }
    return out;
  }

  absl::Status DeleteExperimentUnits(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    DeleteUnitsLocked(id);
    return absl::OkStatus();
  }

 private:
  static ExperimentUnit WithoutProgress(const ExperimentUnit& u) {
    ExperimentUnit out;
    out.experiment_id = u.experiment_id;
    out.unit = u.unit;
    out.owner = u.owner;
    out.expires = u.expires;
    out.done = u.done;
    return out;
  }

  void DeleteUnitsLocked(absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = units_.lower_bound({std::string(id), INT32_MIN});
    while (it != units_.end() && it->first.first == id) it = units_.erase(it);
  }

  mutable absl::Mutex mu_;
  std::map<std::string, ExperimentRecord, std::less<>> records_
      ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, int32_t>, ExperimentUnit> units_
      ABSL_GUARDED_BY(mu_);
};

class InMemoryMetricHistoryStore final : public MetricHistoryStore {
 public:
  explicit InMemoryMetricHistoryStore(int64_t max_per_network)
      : max_per_network_(max_per_network) {}

  absl::Status AppendMetrics(absl::string_view network_id,
                             const std::vector<MetricRecord>& events) override {
    absl::MutexLock lock(&mu_);
    auto it = history_.find(network_id);
    int64_t last = it == history_.end() || it->second.empty()
                       ? std::numeric_limits<int64_t>::min()
                       : it->second.back().seq;
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i].seq <= last) {
        return absl::InvalidArgumentError(
            absl::StrCat("events[", i, "].seq: expected more than ", last,
                         ", got ", events[i].seq));
      }
      last = events[i].seq;
    }
    if (it == history_.end()) {
      it = history_.emplace(std::string(network_id), std::deque<MetricRecord>())
               .first;
    }
    auto& h = it->second;
    h.insert(h.end(), events.begin(), events.end());
    while (static_cast<int64_t>(h.size()) > max_per_network_) h.pop_front();
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<MetricRecord>> ReadMetrics(
      absl::string_view network_id, int64_t from_seq,
      int limit) const override {
    absl::ReaderMutexLock lock(&mu_);
    std::vector<MetricRecord> out;
    auto it = history_.find(network_id);
    if (it == history_.end()) return out;
    for (const auto& e : it->second) {
      if (static_cast<int>(out.size()) >= limit) break;
      if (e.seq >= from_seq) out.push_back(e);
    }
    return out;
  }

  absl::Status DeleteMetrics(absl::string_view network_id) override {
    absl::MutexLock lock(&mu_);
    auto it = history_.find(network_id);
    if (it != history_.end()) history_.erase(it);
    return absl::OkStatus();
  }

 private:
  const int64_t max_per_network_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::deque<MetricRecord>, std::less<>> history_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<ExperimentStore> NewInMemoryExperimentStore() {
  return std::make_unique<InMemoryExperimentStore>();
}

std::unique_ptr<MetricHistoryStore> NewInMemoryMetricHistoryStore(
    int64_t max_per_network) {
  return std::make_unique<InMemoryMetricHistoryStore>(max_per_network);
}

}  // namespace satlab::store
