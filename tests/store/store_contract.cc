#include "tests/store/store_contract.h"

#include <ftw.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace satlab::store::testing {
namespace {

using engine::AnyMatrix;
using engine::DType;
using engine::RowMatrix;

uint64_t SplitMix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Finite values with random sign, mantissa and exponent in [2^-60, 2^60),
// and the ones a careless encoder loses: -0.0 and the smallest denormal.
template <typename T>
RowMatrix<T> Filled(int64_t rows, int64_t cols, uint64_t& rng) {
  RowMatrix<T> m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) {
    if (i == 0) {
      m.data()[i] = T(-0.0);
    } else if (i == 1) {
      m.data()[i] = std::numeric_limits<T>::denorm_min();
    } else {
      uint64_t r = SplitMix(rng);
      T mantissa = T(1) + T(r & 0xfffffff) / T(1 << 28);
      int exponent = static_cast<int>((r >> 28) % 120) - 60;
      T v = std::ldexp(mantissa, exponent);
      m.data()[i] = (r >> 40) & 1 ? -v : v;
    }
  }
  return m;
}

AnyMatrix FilledAny(DType dtype, int64_t rows, int64_t cols, uint64_t& rng) {
  if (dtype == DType::kFloat32) return Filled<float>(rows, cols, rng);
  return Filled<double>(rows, cols, rng);
}

void FillTensors(NetworkRecord& r, uint64_t seed) {
  engine::NetworkState& s = r.state;
  uint64_t rng = seed;
  auto fill = [&](std::vector<AnyMatrix>& w, std::vector<AnyMatrix>& b) {
    w.clear();
    b.clear();
    int fan_in = s.spec.input_size;
    for (const auto& l : s.spec.layers) {
      w.push_back(FilledAny(s.spec.dtype, fan_in, l.units, rng));
      b.push_back(FilledAny(s.spec.dtype, 1, l.units, rng));
      fan_in = l.units;
    }
  };
  fill(s.weights, s.biases);
  for (auto& slot : s.optimizer_slots) fill(slot.weights, slot.biases);
}

void FillRequests(NetworkRecord& r, int n, uint64_t seed) {
  r.requests.clear();
  for (int i = 0; i < n; ++i) {
    RequestRecord q;
    q.request_id = absl::StrCat("req-", seed, "-", i);
    q.fingerprint = seed * 1000003 + static_cast<uint64_t>(i);
    // Bytes of every value, NULs included: responses are serialized protos.
    for (int b = 0; b < 300 + i; ++b) {
      q.response.push_back(static_cast<char>((b * 7 + i) & 0xff));
    }
    r.requests.push_back(std::move(q));
  }
}

template <typename T>
bool SameBits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

::testing::AssertionResult SameTensor(const AnyMatrix& a, const AnyMatrix& b,
                                      const std::string& what) {
  if (a.index() != b.index()) {
    return ::testing::AssertionFailure() << what << ": dtype differs";
  }
  auto check = [&](const auto& x, const auto& y) -> ::testing::AssertionResult {
    if (x.rows() != y.rows() || x.cols() != y.cols()) {
      return ::testing::AssertionFailure()
             << what << ": shape [" << x.rows() << ", " << x.cols() << "] vs ["
             << y.rows() << ", " << y.cols() << "]";
    }
    if (x.size() > 0 &&
        std::memcmp(x.data(), y.data(), sizeof(x.data()[0]) * x.size()) != 0) {
      return ::testing::AssertionFailure() << what << ": bits differ";
    }
    return ::testing::AssertionSuccess();
  };
  if (a.index() == 0) {
    return check(std::get<0>(a), std::get<0>(b));
  }
  return check(std::get<1>(a), std::get<1>(b));
}

::testing::AssertionResult SameTensors(const std::vector<AnyMatrix>& a,
                                       const std::vector<AnyMatrix>& b,
                                       const std::string& what) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure()
           << what << ": " << a.size() << " vs " << b.size() << " tensors";
  }
  for (size_t i = 0; i < a.size(); ++i) {
    auto r = SameTensor(a[i], b[i], absl::StrCat(what, "[", i, "]"));
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

std::string StoreFactoryName(
    const ::testing::TestParamInfo<StoreFactory>& info) {
  return info.param.name;
}

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr && *base ? base : "/tmp",
                                  "/satlab-store-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << ": " << std::strerror(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() { RemoveTree(path_); }

void RemoveTree(const std::string& path) {
  nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) {
        return remove(p);
      },
      16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

NetworkRecord MakeRecord(const std::string& id, DType dtype,
                         Optimizer optimizer, uint64_t seed,
                         std::initializer_list<int> sizes, int requests) {
  NetworkRecord r;
  r.id = id;
  r.create_time = absl::FromUnixNanos(1'700'000'000'123'456'789LL +
                                      static_cast<int64_t>(seed));
  r.update_time = r.create_time + absl::Nanoseconds(777);
  engine::NetworkSpec& spec = r.state.spec;
  auto it = sizes.begin();
  spec.input_size = *it++;
  for (; it != sizes.end(); ++it) {
    engine::LayerSpec l;
    l.units = *it;
    l.activation = engine::Activation::kLeakyRelu;
    l.leaky_relu_slope = 0.0123 + static_cast<double>(seed);
    spec.layers.push_back(l);
  }
  spec.layers.back().activation = engine::Activation::kSigmoid;
  spec.loss = engine::Loss::kBce;
  spec.init.scheme = engine::InitScheme::kGlorotNormal;
  spec.init.seed = 0xfeedface00000000ULL + seed;
  spec.init.mean = -0.25;
  spec.init.std = 0.3;
  spec.dtype = dtype;
  spec.saturation_threshold = 0.07;
  spec.optimizer.learning_rate = 0.0317;
  spec.optimizer.weight_decay = 1e-4;
  int slots = 0;
  switch (optimizer) {
    case Optimizer::kSgd:
      break;
    case Optimizer::kMomentum:
      spec.optimizer.momentum = 0.9;
      spec.optimizer.nesterov = true;
      slots = 1;
      break;
    case Optimizer::kAdam:
      spec.optimizer.kind = engine::OptimizerKind::kAdam;
      spec.optimizer.beta1 = 0.85;
      spec.optimizer.beta2 = 0.995;
      spec.optimizer.epsilon = 1e-7;
      slots = 2;
      r.state.optimizer_updates = 41 + static_cast<int64_t>(seed);
      break;
  }
  r.state.optimizer_slots.resize(slots);
  r.state.step = 1000 + static_cast<int64_t>(seed);
  r.state.samples_seen = 32 * r.state.step;
  FillTensors(r, seed);
  FillRequests(r, requests, seed);
  return r;
}

void Advance(NetworkRecord& r) {
  ++r.state.step;
  r.state.samples_seen += 32;
  if (r.state.spec.optimizer.kind == engine::OptimizerKind::kAdam) {
    ++r.state.optimizer_updates;
  }
  r.update_time += absl::Milliseconds(3);
  uint64_t seed = static_cast<uint64_t>(r.state.step) * 7919;
  FillTensors(r, seed);
  FillRequests(r, static_cast<int>(r.requests.size()) + 1, seed);
}

::testing::AssertionResult SameSpec(const engine::NetworkSpec& a,
                                    const engine::NetworkSpec& b) {
  auto fail = [](const char* what) {
    return ::testing::AssertionFailure() << "spec." << what << " differs";
  };
  if (a.input_size != b.input_size) return fail("input_size");
  if (a.layers.size() != b.layers.size()) return fail("layers (count)");
  for (size_t i = 0; i < a.layers.size(); ++i) {
    if (a.layers[i].units != b.layers[i].units ||
        a.layers[i].activation != b.layers[i].activation ||
        !SameBits(a.layers[i].leaky_relu_slope, b.layers[i].leaky_relu_slope)) {
      return fail("layers");
    }
  }
  if (a.loss != b.loss) return fail("loss");
  if (a.init.scheme != b.init.scheme || a.init.seed != b.init.seed ||
      !SameBits(a.init.mean, b.init.mean) ||
      !SameBits(a.init.std, b.init.std) ||
      a.init.explicit_params.size() != b.init.explicit_params.size()) {
    return fail("init");
  }
  const auto& x = a.optimizer;
  const auto& y = b.optimizer;
  if (x.kind != y.kind || !SameBits(x.learning_rate, y.learning_rate) ||
      !SameBits(x.momentum, y.momentum) || x.nesterov != y.nesterov ||
      !SameBits(x.weight_decay, y.weight_decay) ||
      !SameBits(x.beta1, y.beta1) || !SameBits(x.beta2, y.beta2) ||
      !SameBits(x.epsilon, y.epsilon)) {
    return fail("optimizer");
  }
  if (a.dtype != b.dtype) return fail("dtype");
  if (!SameBits(a.saturation_threshold, b.saturation_threshold)) {
    return fail("saturation_threshold");
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SameRecord(const NetworkRecord& a,
                                      const NetworkRecord& b) {
  if (a.id != b.id) {
    return ::testing::AssertionFailure() << "id " << a.id << " vs " << b.id;
  }
  if (a.create_time != b.create_time || a.update_time != b.update_time) {
    return ::testing::AssertionFailure() << a.id << ": times differ";
  }
  if (auto r = SameSpec(a.state.spec, b.state.spec); !r) return r;
  if (a.state.step != b.state.step ||
      a.state.samples_seen != b.state.samples_seen ||
      a.state.optimizer_updates != b.state.optimizer_updates) {
    return ::testing::AssertionFailure() << a.id << ": counters differ";
  }
  if (auto r = SameTensors(a.state.weights, b.state.weights, "weights"); !r) {
    return r;
  }
  if (auto r = SameTensors(a.state.biases, b.state.biases, "biases"); !r) {
    return r;
  }
  if (a.state.optimizer_slots.size() != b.state.optimizer_slots.size()) {
    return ::testing::AssertionFailure() << "optimizer slot counts differ";
  }
  for (size_t i = 0; i < a.state.optimizer_slots.size(); ++i) {
    const auto& x = a.state.optimizer_slots[i];
    const auto& y = b.state.optimizer_slots[i];
    std::string what = absl::StrCat("optimizer_slots[", i, "]");
    if (auto r = SameTensors(x.weights, y.weights, what + ".weights"); !r) {
      return r;
    }
    if (auto r = SameTensors(x.biases, y.biases, what + ".biases"); !r) {
      return r;
    }
  }
  if (a.requests.size() != b.requests.size()) {
    return ::testing::AssertionFailure() << "request counts differ";
  }
  for (size_t i = 0; i < a.requests.size(); ++i) {
    if (a.requests[i].request_id != b.requests[i].request_id ||
        a.requests[i].fingerprint != b.requests[i].fingerprint ||
        a.requests[i].response != b.requests[i].response) {
      return ::testing::AssertionFailure() << "requests[" << i << "] differs";
    }
  }
  return ::testing::AssertionSuccess();
}

std::unique_ptr<NetworkStore> StoreContractTest::Open(int64_t max_networks) {
  absl::StatusOr<std::unique_ptr<NetworkStore>> store =
      GetParam().open(dir_.path(), max_networks);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

namespace {

void ExpectLoads(const NetworkStore& store, const NetworkRecord& want) {
  absl::StatusOr<NetworkRecord> got = store.Load(want.id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameRecord(*got, want));
}

TEST_P(StoreContractTest, RoundTripIsBitwiseForEveryDtypeAndOptimizer) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<NetworkRecord> records;
  uint64_t seed = 1;
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    for (Optimizer opt :
         {Optimizer::kSgd, Optimizer::kMomentum, Optimizer::kAdam}) {
      records.push_back(MakeRecord(absl::StrCat("net-", seed), dtype, opt, seed,
                                   {4, 7, 5, 3}, static_cast<int>(seed)));
      ++seed;
    }
  }
  for (const auto& r : records) ASSERT_TRUE(store->Create(r).ok());
  for (const auto& r : records) ExpectLoads(*store, r);
  if (store->durable()) {
    store.reset();
    auto reopened = Open();
    ASSERT_NE(reopened, nullptr);
    for (const auto& r : records) ExpectLoads(*reopened, r);
  }
}

TEST_P(StoreContractTest, LoadOfAbsentIsNotFound) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<NetworkRecord> got = store->Load("nope");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find("networks/nope"), std::string::npos)
      << got.status();
}

TEST_P(StoreContractTest, CreateOfTakenIdIsAlreadyExistsAndChangesNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  NetworkRecord first = MakeRecord("a", DType::kFloat32, Optimizer::kAdam, 1);
  NetworkRecord second = MakeRecord("a", DType::kFloat64, Optimizer::kSgd, 2);
  ASSERT_TRUE(store->Create(first).ok());
  absl::Status s = store->Create(second);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_NE(s.message().find("networks/a"), std::string::npos) << s;
  ExpectLoads(*store, first);
  EXPECT_EQ(*store->Count(), 1);
}

TEST_P(StoreContractTest, CreateBeyondMaxNetworksIsResourceExhausted) {
  auto store = Open(3);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store
                    ->Create(MakeRecord(absl::StrCat("n", i), DType::kFloat32,
                                        Optimizer::kSgd, i))
                    .ok());
  }
  absl::Status s =
      store->Create(MakeRecord("n3", DType::kFloat32, Optimizer::kSgd, 3));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("--max_networks"), std::string::npos) << s;
  EXPECT_EQ(*store->Count(), 3);
  EXPECT_EQ(store->Load("n3").status().code(), absl::StatusCode::kNotFound);
  // A taken id is ALREADY_EXISTS even when the store is full.
  EXPECT_EQ(store->Create(MakeRecord("n0", DType::kFloat32, Optimizer::kSgd, 9))
                .code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(store->Delete("n1").ok());
  EXPECT_TRUE(
      store->Create(MakeRecord("n3", DType::kFloat32, Optimizer::kSgd, 3))
          .ok());
}

TEST_P(StoreContractTest, ListPagesInIdOrderWithAfterAndLimit) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<std::string> ids = {"m", "b", "z", "a", "k", "c", "y"};
  uint64_t seed = 0;
  for (const auto& id : ids) {
    ASSERT_TRUE(store
                    ->Create(MakeRecord(id, DType::kFloat64,
                                        Optimizer::kMomentum, ++seed))
                    .ok());
  }
  std::vector<std::string> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> seen;
  std::string after;
  for (int pages = 0; pages < 10; ++pages) {
    absl::StatusOr<std::vector<NetworkSummary>> page = store->List(after, 3);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_LE(page->size(), 3u);
    if (page->empty()) break;
    for (const auto& s : *page) {
      seen.push_back(s.id);
      NetworkRecord want = *store->Load(s.id);
      EXPECT_EQ(s.create_time, want.create_time);
      EXPECT_EQ(s.update_time, want.update_time);
      EXPECT_EQ(s.step, want.state.step);
      EXPECT_EQ(s.samples_seen, want.state.samples_seen);
      EXPECT_TRUE(SameSpec(s.spec, want.state.spec));
    }
    after = page->back().id;
  }
  EXPECT_EQ(seen, sorted);
  EXPECT_TRUE(store->List("", 0)->empty());
  EXPECT_TRUE(store->List("z", 5)->empty());
  absl::StatusOr<std::vector<NetworkSummary>> mid = store->List("c", 2);
  ASSERT_TRUE(mid.ok());
  ASSERT_EQ(mid->size(), 2u);
  EXPECT_EQ((*mid)[0].id, "k");
  EXPECT_EQ((*mid)[1].id, "m");
  // `after` need not be a stored id.
  mid = store->List("bb", 1);
  ASSERT_TRUE(mid.ok());
  ASSERT_EQ(mid->size(), 1u);
  EXPECT_EQ((*mid)[0].id, "c");
}

TEST_P(StoreContractTest, CommitReplacesStateTimeAndRequests) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  NetworkRecord r = MakeRecord("x", DType::kFloat32, Optimizer::kAdam, 5);
  ASSERT_TRUE(store->Create(r).ok());
  for (int i = 0; i < 3; ++i) {
    Advance(r);
    ASSERT_TRUE(store->Commit(r).ok());
    ExpectLoads(*store, r);
  }
  if (store->durable()) {
    store.reset();
    auto reopened = Open();
    ASSERT_NE(reopened, nullptr);
    ExpectLoads(*reopened, r);
  }
}

TEST_P(StoreContractTest,
       CommitOfAbsentOrRecreatedIsNotFoundAndChangesNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  NetworkRecord ghost = MakeRecord("g", DType::kFloat64, Optimizer::kSgd, 1);
  absl::Status s = store->Commit(ghost);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(*store->Count(), 0);

  NetworkRecord old = MakeRecord("r", DType::kFloat64, Optimizer::kAdam, 2);
  ASSERT_TRUE(store->Create(old).ok());
  ASSERT_TRUE(store->Delete("r").ok());
  NetworkRecord recreated =
      MakeRecord("r", DType::kFloat32, Optimizer::kSgd, 3);
  ASSERT_NE(recreated.create_time, old.create_time);
  ASSERT_TRUE(store->Create(recreated).ok());
  Advance(old);  // the old network's writer commits late
  s = store->Commit(old);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("networks/r"), std::string::npos) << s;
  ExpectLoads(*store, recreated);
}

TEST_P(StoreContractTest, DeleteRemovesAndCounts) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->Count(), 0);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(store
                    ->Create(MakeRecord(absl::StrCat("d", i), DType::kFloat32,
                                        Optimizer::kSgd, i))
                    .ok());
    EXPECT_EQ(*store->Count(), i + 1);
  }
  ASSERT_TRUE(store->Delete("d2").ok());
  EXPECT_EQ(*store->Count(), 3);
  EXPECT_EQ(store->Load("d2").status().code(), absl::StatusCode::kNotFound);
  absl::Status s = store->Delete("d2");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("networks/d2"), std::string::npos) << s;
  EXPECT_EQ(*store->Count(), 3);
  std::vector<std::string> ids;
  absl::StatusOr<std::vector<NetworkSummary>> all = store->List("", 10);
  ASSERT_TRUE(all.ok()) << all.status();
  for (const auto& n : *all) ids.push_back(n.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"d0", "d1", "d3"}));
  if (store->durable()) {
    store.reset();
    auto reopened = Open();
    ASSERT_NE(reopened, nullptr);
    EXPECT_EQ(*reopened->Count(), 3);
    EXPECT_EQ(reopened->Load("d2").status().code(),
              absl::StatusCode::kNotFound);
  }
}

// Writers commit their own networks while readers load and list them all:
// every Load sees one whole commit (every tensor element equals the
// record's step), every listing is in order, and at the end each network
// holds its writer's last commit.
TEST_P(StoreContractTest, ConcurrentCommitLoadListSeeWholeRecords) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  constexpr int kWriters = 3;
  constexpr int kReaders = 3;
  constexpr int kCommits = 40;
  auto stamped = [](int w, int64_t step) {
    NetworkRecord r = MakeRecord(absl::StrCat("w", w), DType::kFloat32,
                                 Optimizer::kMomentum, 1, {8, 16, 4}, 1);
    r.state.step = step;
    auto stamp = [&](std::vector<AnyMatrix>& ts) {
      for (auto& t : ts) std::get<0>(t).setConstant(static_cast<float>(step));
    };
    stamp(r.state.weights);
    stamp(r.state.biases);
    for (auto& s : r.state.optimizer_slots) {
      stamp(s.weights);
      stamp(s.biases);
    }
    return r;
  };
  for (int w = 0; w < kWriters; ++w) {
    ASSERT_TRUE(store->Create(stamped(w, 0)).ok());
  }
  std::atomic<int> errors{0};
  std::atomic<bool> writing{true};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int64_t step = 1; step <= kCommits; ++step) {
        if (!store->Commit(stamped(w, step)).ok()) ++errors;
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      int rounds = 0;
      while (writing.load() || rounds < 5) {
        ++rounds;
        absl::StatusOr<NetworkRecord> got =
            store->Load(absl::StrCat("w", (rounds + r) % kWriters));
        if (!got.ok()) {
          ++errors;
          continue;
        }
        float want = static_cast<float>(got->state.step);
        for (const auto& t : got->state.weights) {
          const auto& m = std::get<0>(t);
          for (int64_t i = 0; i < m.size(); ++i) {
            if (m.data()[i] != want) ++errors;
          }
        }
        absl::StatusOr<std::vector<NetworkSummary>> page = store->List("", 10);
        if (!page.ok() || page->size() != kWriters) {
          ++errors;
          continue;
        }
        for (int i = 0; i < kWriters; ++i) {
          if ((*page)[i].id != absl::StrCat("w", i)) ++errors;
        }
        if (rounds > 100000) break;  // bounded even if the writers hang
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  writing = false;
  for (size_t i = kWriters; i < threads.size(); ++i) threads[i].join();
  EXPECT_EQ(errors.load(), 0);
  for (int w = 0; w < kWriters; ++w) ExpectLoads(*store, stamped(w, kCommits));
  EXPECT_EQ(*store->Count(), kWriters);
}

}  // namespace
}  // namespace satlab::store::testing
