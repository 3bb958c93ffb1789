// The ExperimentStore and MetricHistoryStore contract as a parameterized
// GoogleTest suite (aux_store_contract.cc), instantiated for every backend
// that implements them: in memory and SQLite (experiment_store_test.cc),
// PostgreSQL (postgres_store_test.cc). Durable stores are reopened where it
// matters.
#ifndef SATLAB_TESTS_STORE_AUX_STORE_CONTRACT_H_
#define SATLAB_TESTS_STORE_AUX_STORE_CONTRACT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "gtest/gtest.h"
#include "server/store/experiment_store.h"
#include "tests/store/store_contract.h"

namespace satlab::store::testing {

struct AuxStores {
  std::shared_ptr<ExperimentStore> experiments;
  std::shared_ptr<MetricHistoryStore> metrics;
  bool durable = false;
};

struct AuxFactory {
  std::string name;
  // Opens (or reopens) the stores under `dir`, keeping `per_network`
  // metric events per network.
  std::function<AuxStores(const std::string& dir, int64_t per_network)> open;
};

inline void PrintTo(const AuxFactory& f, std::ostream* os) { *os << f.name; }

inline std::string AuxFactoryName(
    const ::testing::TestParamInfo<AuxFactory>& p) {
  return p.param.name;
}

class AuxStoreTest : public ::testing::TestWithParam<AuxFactory> {
 protected:
  AuxStores Open(int64_t per_network = 100) {
    return GetParam().open(dir_.path(), per_network);
  }
  TempDir dir_;
};

}  // namespace satlab::store::testing

#endif  // SATLAB_TESTS_STORE_AUX_STORE_CONTRACT_H_
