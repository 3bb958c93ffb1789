#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/store/network_store.h"

namespace satlab::store {
namespace {

class InMemoryStore final : public NetworkStore {
 public:
  explicit InMemoryStore(int64_t max_networks) : max_networks_(max_networks) {}

  absl::Status Insert(std::shared_ptr<NetworkEntry> entry) override {
    absl::MutexLock lock(&mu_);
    if (entries_.count(entry->id) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("networks/", entry->id, " already exists"));
    }
    if (static_cast<int64_t>(entries_.size()) >= max_networks_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the server holds its limit of ", max_networks_,
                       " networks (--max_networks); delete one first"));
    }
    const std::string id = entry->id;
    entries_.emplace(id, std::move(entry));
    return absl::OkStatus();
  }

  absl::StatusOr<std::shared_ptr<NetworkEntry>> Find(
      absl::string_view id) const override {
    absl::ReaderMutexLock lock(&mu_);
    auto it = entries_.find(std::string(id));
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("networks/", id, " not found"));
    }
    return it->second;
  }

  std::vector<std::shared_ptr<NetworkEntry>> List(absl::string_view after,
                                                  int limit) const override {
    absl::ReaderMutexLock lock(&mu_);
    std::vector<std::shared_ptr<NetworkEntry>> page;
    for (auto it = entries_.upper_bound(std::string(after));
         it != entries_.end() && static_cast<int>(page.size()) < limit; ++it) {
      page.push_back(it->second);
    }
    return page;
  }

  absl::Status Erase(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(std::string(id));
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("networks/", id, " not found"));
    }
    it->second->deleted.store(true);
    entries_.erase(it);
    return absl::OkStatus();
  }

  int64_t size() const override {
    absl::ReaderMutexLock lock(&mu_);
    return static_cast<int64_t>(entries_.size());
  }

 private:
  const int64_t max_networks_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<NetworkEntry>, std::less<>> entries_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<NetworkStore> NewInMemoryStore(int64_t max_networks) {
  return std::make_unique<InMemoryStore>(max_networks);
}

}  // namespace satlab::store
