// The ExperimentStore and MetricHistoryStore contract, on the in-memory
// stores and the SQLite store (which is reopened where it matters).
#include "server/store/experiment_store.h"

#include <memory>
#include <string>

#include "server/store/sqlite_store.h"
#include "tests/store/aux_store_contract.h"

namespace satlab::store::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(
    Stores, AuxStoreTest,
    ::testing::Values(
        AuxFactory{"in_memory",
                   [](const std::string&, int64_t per_network) {
                     return AuxStores{
                         NewInMemoryExperimentStore(),
                         NewInMemoryMetricHistoryStore(per_network), false};
                   }},
        AuxFactory{"sqlite",
                   [](const std::string& dir, int64_t per_network) {
                     SqliteStoreOptions options;
                     options.data_dir = dir + "/data";
                     options.metric_history_per_network = per_network;
                     absl::StatusOr<SqliteStores> s = OpenSqliteStores(options);
                     EXPECT_TRUE(s.ok()) << s.status();
                     if (!s.ok()) return AuxStores();
                     return AuxStores{s->experiments, s->metrics, true};
                   }}),
    AuxFactoryName);

}  // namespace
}  // namespace satlab::store::testing
