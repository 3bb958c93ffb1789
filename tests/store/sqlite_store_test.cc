// The store contract on the SQLite store, with synchronous FULL (the
// default) and NORMAL.
#include "server/store/sqlite_store.h"

#include "tests/store/store_contract.h"

namespace satlab::store::testing {
namespace {

StoreFactory Sqlite(std::string name, bool full) {
  return {std::move(name),
          [full](const std::string& dir, int64_t max_networks)
              -> absl::StatusOr<std::unique_ptr<NetworkStore>> {
            SqliteStoreOptions options;
            options.data_dir = dir + "/data";
            options.max_networks = max_networks;
            options.synchronous_full = full;
            return NewSqliteStore(options);
          }};
}

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreContractTest,
                         ::testing::Values(Sqlite("sqlite_full", true),
                                           Sqlite("sqlite_normal", false)),
                         StoreFactoryName);

}  // namespace
}  // namespace satlab::store::testing
