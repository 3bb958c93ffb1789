#include <deque>
#include <limits>
#include <map>
#include <new>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/store/experiment_store.h"

namespace satlab::store {
namespace {

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

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, ExperimentRecord, std::less<>> records_
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
