// The store contract on the in-memory store (label tsan: the concurrency
// case runs under ThreadSanitizer too).
#include "server/store/network_store.h"
#include "tests/store/store_contract.h"

namespace satlab::store::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(
    InMemory, StoreContractTest,
    ::testing::Values(StoreFactory{
        "in_memory",
        [](const std::string&, int64_t max_networks)
            -> absl::StatusOr<std::unique_ptr<NetworkStore>> {
          return NewInMemoryStore(max_networks);
        }}),
    StoreFactoryName);

}  // namespace
}  // namespace satlab::store::testing
