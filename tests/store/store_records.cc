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
#include "tests/store/store_contract.h"

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
  ++r.revision;
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
  if (a.revision != b.revision) {
    return ::testing::AssertionFailure()
           << a.id << ": revision " << a.revision << " vs " << b.revision;
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

}  // namespace satlab::store::testing
