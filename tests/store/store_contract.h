// The NetworkStore contract as a parameterized GoogleTest suite, written
// against the interface only: every store (in memory, SQLite, and the
// PostgreSQL store of issue 14) instantiates it with a factory:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, StoreContractTest,
//       ::testing::Values(StoreFactory{"sqlite", &OpenMyStore}),
//       StoreFactoryName);
//
// Also the helpers other store tests share (store_records.cc): hand-built
// records (no dependency on Network::ExportState) and bitwise comparison.
#ifndef SATLAB_TESTS_STORE_STORE_CONTRACT_H_
#define SATLAB_TESTS_STORE_STORE_CONTRACT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "server/store/network_store.h"

namespace satlab::store::testing {

struct StoreFactory {
  std::string name;
  // Opens the store kept under `dir` (a fresh empty directory per test; a
  // second call with the same dir after the first store is destroyed
  // reopens it). Stores without files may ignore `dir`.
  std::function<absl::StatusOr<std::unique_ptr<NetworkStore>>(
      const std::string& dir, int64_t max_networks)>
      open;
};

// gtest prints the parameter of a failed test by its name, not its bytes.
inline void PrintTo(const StoreFactory& f, std::ostream* os) { *os << f.name; }

std::string StoreFactoryName(
    const ::testing::TestParamInfo<StoreFactory>& info);

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Removes `path` and everything under it.
void RemoveTree(const std::string& path);

enum class Optimizer { kSgd, kMomentum, kAdam };

// A record built by hand: spec `sizes` (input, then each layer's units),
// every tensor filled from `seed` (values that differ in every bit
// position, with -0.0 and denormals among them), the optimizer slots the
// optimizer keeps, `requests` request records. Times are whole
// nanoseconds.
NetworkRecord MakeRecord(const std::string& id, engine::DType dtype,
                         Optimizer optimizer, uint64_t seed,
                         std::initializer_list<int> sizes = {3, 5, 2},
                         int requests = 2);

// Changes every tensor, the counters, the update time and the requests the
// way a training step would (the result is what the seed+1 record holds),
// and takes the next revision (what its Commit writes).
void Advance(NetworkRecord& record);

// Field-by-field, bitwise (doubles by their bits) equality, with a message
// naming the first difference.
::testing::AssertionResult SameRecord(const NetworkRecord& a,
                                      const NetworkRecord& b);
::testing::AssertionResult SameSpec(const engine::NetworkSpec& a,
                                    const engine::NetworkSpec& b);

class StoreContractTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  // Opens (or reopens) the store under dir_.
  std::unique_ptr<NetworkStore> Open(int64_t max_networks = 100);

  TempDir dir_;
};

}  // namespace satlab::store::testing

#endif  // SATLAB_TESTS_STORE_STORE_CONTRACT_H_
