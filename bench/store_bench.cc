// What a durable Commit costs (issue 12): the SQLite store's Commit of one
// network's whole state, WAL mode, with synchronous FULL (the default: the
// WAL is fsynced at every commit) and NORMAL (fsynced at checkpoints only),
// the PostgreSQL store (issue 14) when $SATLAB_BENCH_PG_URL names a
// database (scripts/pg_throwaway.sh start DIR prints one; fsync on, as
// PostgreSQL's default), and the in-memory store for reference. Networks,
// float32 with Adam (two
// optimizer slots, so the record is 3x the parameters):
//
//   tiny  2-16-16-1        (4 KB record)
//   big   784-256-256-10   (3.2 MB record)
//
// The store lives under $SATLAB_BENCH_DIR (default /tmp); results depend on
// that file system's fsync, so docs/notes/store.md says which one was used.
//
// Usage: store_bench [google benchmark flags]
#include <ftw.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "server/store/network_store.h"
#include "server/store/postgres_store.h"
#include "server/store/sqlite_store.h"

namespace satlab::bench {
namespace {

using engine::AnyMatrix;
using engine::RowMatrix;

store::NetworkRecord Record(const std::vector<int>& sizes) {
  store::NetworkRecord r;
  r.id = "bench";
  r.create_time = absl::FromUnixNanos(1'700'000'000'000'000'000);
  r.update_time = r.create_time;
  engine::NetworkSpec& spec = r.state.spec;
  spec.input_size = sizes[0];
  for (size_t i = 1; i < sizes.size(); ++i) {
    engine::LayerSpec l;
    l.units = sizes[i];
    spec.layers.push_back(l);
  }
  spec.dtype = engine::DType::kFloat32;
  spec.optimizer.kind = engine::OptimizerKind::kAdam;
  auto fill = [&](std::vector<AnyMatrix>& w, std::vector<AnyMatrix>& b) {
    for (size_t i = 1; i < sizes.size(); ++i) {
      w.push_back(
          RowMatrix<float>(RowMatrix<float>::Random(sizes[i - 1], sizes[i])));
      b.push_back(RowMatrix<float>(RowMatrix<float>::Random(1, sizes[i])));
    }
  };
  fill(r.state.weights, r.state.biases);
  r.state.optimizer_slots.resize(2);
  for (auto& s : r.state.optimizer_slots) fill(s.weights, s.biases);
  return r;
}

const std::vector<int>& Sizes(int net) {
  static const std::vector<int> kTiny = {2, 16, 16, 1};
  static const std::vector<int> kBig = {784, 256, 256, 10};
  return net == 0 ? kTiny : kBig;
}

std::string FreshDir() {
  const char* base = getenv("SATLAB_BENCH_DIR");
  std::string tmpl = std::string(base != nullptr && *base ? base : "/tmp") +
                     "/satlab-bench-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

void RemoveTree(const std::string& path) {
  nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) {
        return remove(p);
      },
      16, FTW_DEPTH | FTW_PHYS);
}

// state.range(0): 0 tiny, 1 big; range(1): 0 in memory, 1 SQLite NORMAL,
// 2 SQLite FULL, 3 PostgreSQL ($SATLAB_BENCH_PG_URL).
void BM_Commit(benchmark::State& state) {
  const int net = static_cast<int>(state.range(0));
  const int kind = static_cast<int>(state.range(1));
  std::string dir = FreshDir();
  std::unique_ptr<store::NetworkStore> s;
  if (kind == 0) {
    s = store::NewInMemoryStore(10);
  } else if (kind == 3) {
    const char* url = getenv("SATLAB_BENCH_PG_URL");
    if (url == nullptr || *url == '\0') {
      state.SkipWithError("set SATLAB_BENCH_PG_URL=postgresql://...");
      RemoveTree(dir);
      return;
    }
    store::PostgresStoreOptions options;
    options.url = url;
    auto opened = store::NewPostgresStore(options);
    if (!opened.ok()) {
      state.SkipWithError(std::string(opened.status().message()).c_str());
      RemoveTree(dir);
      return;
    }
    s = *std::move(opened);
    (void)s->Delete("bench");  // left by an earlier run, or absent
  } else {
    store::SqliteStoreOptions options;
    options.data_dir = dir + "/data";
    options.synchronous_full = kind == 2;
    auto opened = store::NewSqliteStore(options);
    if (!opened.ok()) {
      state.SkipWithError(std::string(opened.status().message()).c_str());
      return;
    }
    s = *std::move(opened);
  }
  store::NetworkRecord r = Record(Sizes(net));
  if (!s->Create(r).ok()) std::abort();
  int64_t bytes = 0;
  for (const auto& t : r.state.weights) bytes += std::get<0>(t).size() * 4;
  for (const auto& t : r.state.biases) bytes += std::get<0>(t).size() * 4;
  bytes *= 3;
  for (auto _ : state) {
    ++r.state.step;
    ++r.revision;
    // A step changes every parameter: so does each commit here.
    std::get<0>(r.state.weights[0])(0, 0) += 1.0f;
    if (!s->Commit(r).ok()) {
      state.SkipWithError("commit failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["record_bytes"] = static_cast<double>(bytes);
  s.reset();
  RemoveTree(dir);
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"net", "store"});
  for (int net : {0, 1}) {
    for (int kind : {0, 1, 2, 3}) b->Args({net, kind});
  }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_Commit)->Apply(Args);

}  // namespace
}  // namespace satlab::bench

BENCHMARK_MAIN();
