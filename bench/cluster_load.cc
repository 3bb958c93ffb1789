// Load for bench/cluster_bench.sh (issue 14): K clients, each training its
// own small network through one address (nginx in front of the replicas,
// or one replica), for a fixed time; prints one line of key=value figures:
// the steps applied in the measured window, and the CPU seconds the
// processes named by --cpu_pids (and their children: nginx's workers,
// PostgreSQL's backends) used in exactly that window, read from /proc.
//
//   satlab_bench_cluster_load --target=127.0.0.1:PORT --clients=6
//     --seconds=15 --mode=stream|step --cpu_pids=PID,PID,...
//
// stream: one TrainSession per client (Train streams, 32 minibatches per
//   message, results every 64 steps): a stream stays on the replica nginx
//   gave it, so this is the replicas' training throughput.
// step: unary TrainStep calls, one minibatch each; every call is durable
//   when it returns (one store commit each), and nginx spreads the calls
//   of one client over every replica.
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "host:port to train through");
ABSL_FLAG(int, clients, 6, "clients, each with its own channel and network");
ABSL_FLAG(double, seconds, 15, "measured seconds (after 2 s of warm-up)");
ABSL_FLAG(std::string, mode, "stream", "stream (Train) or step (TrainStep)");
ABSL_FLAG(std::string, cpu_pids, "",
          "comma-separated PIDs whose CPU time (with their children's) is "
          "measured over the window");
ABSL_FLAG(std::string, prefix, "load", "network id prefix (unique per run)");

namespace {

// utime + stime (+ the reaped children's) of one process, in seconds.
// Field 2 (comm) may hold spaces: parse after its closing parenthesis.
bool ReadStat(int pid, int* ppid, double* seconds) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::vector<std::string> f =
      absl::StrSplit(line.substr(close + 2), ' ', absl::SkipEmpty());
  // f[0] is field 3 (state): field n is f[n - 3].
  if (f.size() < 15) return false;
  double ticks = 0;
  for (int n : {14, 15, 16, 17}) {
    double v = 0;
    if (!absl::SimpleAtod(f[n - 3], &v)) return false;
    ticks += v;
  }
  if (!absl::SimpleAtoi(f[4 - 3], ppid)) return false;
  *seconds = ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  return true;
}

// CPU seconds of `roots` and their direct children, per process, so that a
// child that exits within the window is not counted twice (its time moves
// into the parent's cutime when reaped).
std::map<int, double> CpuByPid(const std::set<int>& roots) {
  std::map<int, double> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (const dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    int ppid = 0;
    double s = 0;
    if (ReadStat(pid, &ppid, &s) &&
        (roots.count(pid) != 0 || roots.count(ppid) != 0)) {
      out[pid] = s;
    }
  }
  closedir(proc);
  return out;
}

// The CPU used between two snapshots: per PID, the growth; a PID gone by
// the second snapshot counts nothing more (its parent's cutime has it).
double CpuBetween(const std::map<int, double>& a,
                  const std::map<int, double>& b) {
  double total = 0;
  for (const auto& [pid, s] : b) {
    auto it = a.find(pid);
    total += s - (it == a.end() ? 0.0 : it->second);
  }
  return total;
}

double SelfCpu() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// 32 inputs -> 64 tanh -> 64 tanh -> 1 sigmoid, float32, batch 64 rows:
// small enough that the replicas' RPC and store work matters, large enough
// to be a training step (~0.3 MFLOP forward).
satlab::v1::NetworkSpec Spec() {
  satlab::v1::NetworkSpec spec;
  spec.set_input_size(32);
  spec.set_loss(satlab::v1::LOSS_MSE);
  spec.set_dtype(satlab::v1::DTYPE_FLOAT32);
  for (auto [units, act] : {std::pair{64, satlab::v1::ACTIVATION_TANH},
                            std::pair{64, satlab::v1::ACTIVATION_TANH},
                            std::pair{1, satlab::v1::ACTIVATION_SIGMOID}}) {
    auto* layer = spec.add_layers();
    layer->set_units(units);
    layer->set_activation(act);
  }
  spec.mutable_init()->set_scheme(satlab::v1::INIT_SCHEME_UNIFORM_FAN_IN);
  spec.mutable_init()->set_seed(7);
  return spec;
}

satlab::v1::Minibatch Batch(int seed) {
  const int rows = 64;
  std::vector<double> x(rows * 32), y(rows);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<double>((i * 7919 + static_cast<size_t>(seed)) % 1000) /
           1000.0;
  for (int r = 0; r < rows; ++r) y[r] = (r + seed) % 2;
  satlab::v1::Minibatch b;
  *b.mutable_inputs() = satlab::MakeTensor(rows, 32, x);
  *b.mutable_targets() = satlab::MakeTensor(rows, 1, y);
  return b;
}

struct Shared {
  std::atomic<int64_t> steps{0};
  std::atomic<int64_t> errors{0};
  std::atomic<bool> measuring{false};
  std::atomic<bool> stop{false};
  std::string first_error;
  std::atomic<bool> error_noted{false};
};

void NoteError(Shared* shared, const absl::Status& s) {
  shared->errors.fetch_add(1);
  bool expected = false;
  if (shared->error_noted.compare_exchange_strong(expected, true)) {
    shared->first_error = s.ToString();
  }
}

void RunClient(int k, const std::string& mode, Shared* shared) {
  satlab::ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.wait_for_ready = true;
  satlab::Client client(options);
  const std::string id = absl::StrCat(absl::GetFlag(FLAGS_prefix), "-", k);
  auto created = client.CreateNetwork(Spec(), id);
  if (!created.ok()) {
    NoteError(shared, created.status());
    return;
  }
  const std::string name = created->name();
  const satlab::v1::Minibatch batch = Batch(k);
  if (mode == "step") {
    while (!shared->stop.load()) {
      auto r = client.TrainStep(name, batch);
      if (!r.ok()) {
        NoteError(shared, r.status());
        continue;
      }
      if (shared->measuring.load()) shared->steps.fetch_add(1);
    }
    return;
  }
  satlab::TrainOptions train;
  train.report_every = 64;
  auto session = client.StartTraining(name, train);
  if (!session.ok()) {
    NoteError(shared, session.status());
    return;
  }
  std::thread reader([&] {
    satlab::v1::TrainResponse response;
    int64_t last = (*session)->start_step();
    while ((*session)->Read(&response)) {
      const int64_t step = response.result().step();
      if (shared->measuring.load()) shared->steps.fetch_add(step - last);
      last = step;
    }
  });
  while (!shared->stop.load() && (*session)->Write(batch)) {
  }
  (*session)->WritesDone();
  reader.join();
  if (absl::Status s = (*session)->Finish(); !s.ok()) NoteError(shared, s);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode != "stream" && mode != "step") {
    std::fprintf(stderr, "--mode: expected stream or step, got \"%s\"\n",
                 mode.c_str());
    return 2;
  }
  std::set<int> roots;
  for (absl::string_view p :
       absl::StrSplit(absl::GetFlag(FLAGS_cpu_pids), ',', absl::SkipEmpty())) {
    int pid = 0;
    if (!absl::SimpleAtoi(p, &pid)) {
      std::fprintf(stderr, "--cpu_pids: expected PIDs, got \"%s\"\n",
                   std::string(p).c_str());
      return 2;
    }
    roots.insert(pid);
  }
  Shared shared;
  std::vector<std::thread> clients;
  for (int k = 0; k < absl::GetFlag(FLAGS_clients); ++k) {
    clients.emplace_back(RunClient, k, mode, &shared);
  }
  absl::SleepFor(absl::Seconds(2));  // warm-up: channels, networks, caches
  const auto cpu0 = CpuByPid(roots);
  const double self0 = SelfCpu();
  const absl::Time t0 = absl::Now();
  shared.measuring.store(true);
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  shared.measuring.store(false);
  const absl::Time t1 = absl::Now();
  const auto cpu1 = CpuByPid(roots);
  const double self1 = SelfCpu();
  shared.stop.store(true);
  for (auto& t : clients) t.join();
  const double wall = absl::ToDoubleSeconds(t1 - t0);
  // Steps counted as their results arrive; in stream mode the last report
  // of the window may land just after it (at most 64 steps per client).
  std::printf(
      "mode=%s clients=%d seconds=%.3f steps=%lld steps_per_s=%.1f "
      "server_cpu_s=%.3f client_cpu_s=%.3f errors=%lld\n",
      mode.c_str(), absl::GetFlag(FLAGS_clients), wall,
      static_cast<long long>(shared.steps.load()),
      static_cast<double>(shared.steps.load()) / wall, CpuBetween(cpu0, cpu1),
      self1 - self0, static_cast<long long>(shared.errors.load()));
  if (shared.errors.load() > 0) {
    std::fprintf(stderr, "first error: %s\n", shared.first_error.c_str());
  }
  return 0;
}
