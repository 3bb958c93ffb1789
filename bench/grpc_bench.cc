// satlab over gRPC on loopback, against the transport floor and the engine
// in process, all in one program and one run:
//
//   grpc_echo/<case>/<dtype>        unary echo of a request and a response
//                                   as large as TrainStep's (bench/echo.proto),
//                                   served by the same server
//   grpc_train_step/<case>/<dtype>  TrainStep through satlab::Client
//   grpc_stream/<case>/<dtype>      Train stream, one StepResult per step:
//                                   time per step received, the client
//                                   writing ahead as flow control allows
//   grpc_in_process/<case>/<dtype>  Network::TrainStep on the same spec
//
// The server is satlab::service::Server in this process (port 0,
// compute_threads = --threads), the client a satlab::Client over a
// loopback channel.
//
// With --rss --server=PATH instead: starts PATH (satlab-server) as a child
// on port 0 and reports its VmRSS idle, after creating 10,000 tiny networks,
// and after one TrainStep on each (benchmarks server_rss/...).
//
// Usage: grpc_bench --threads=N [google benchmark flags]
//        grpc_bench --rss --server=PATH [google benchmark flags]
//        grpc_bench --durability [google benchmark flags]: Train streams
//          and TrainStep on the durable store (SQLite in a temporary
//          directory, default commit points) against the ephemeral one
//        grpc_bench --packing [google benchmark flags]: steps/s of Train
//          streams carrying 1, 8, 32 and 128 minibatches per message
//          (issue 15 item 4) against the one-per-message stream and the
//          engine in process, in one run (benchmarks packing/...)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/bench_cases.h"
#include "bench/engine_cases.h"
#include "benchmark/benchmark.h"
#include "client/client.h"
#include "echo.grpc.pb.h"  // generated from bench/echo.proto
#include "grpcpp/grpcpp.h"
#include "server/engine/network.h"
#include "server/service/convert.h"
#include "server/service/server.h"

namespace satlab::bench {
namespace {

// ---------------------------------------------------------------------------
// The echo service: answers inline with a payload of the requested size.
class EchoServiceImpl final : public EchoService::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx,
                                 const EchoRequest* request,
                                 EchoResponse* response) override {
    response->mutable_payload()->assign(
        static_cast<size_t>(std::max(0, request->response_bytes())), 'x');
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// ---------------------------------------------------------------------------
// Specs and minibatches of the bench cases, as protos.
v1::NetworkSpec ProtoSpec(const BenchCase& c, bool f32) {
  v1::NetworkSpec spec;
  spec.set_input_size(c.sizes[0]);
  const int layers = static_cast<int>(c.sizes.size()) - 1;
  for (int l = 1; l <= layers; ++l) {
    v1::LayerSpec* layer = spec.add_layers();
    layer->set_units(c.sizes[l]);
    layer->set_activation((l == layers && c.loss == OutputLoss::kSoftmaxCce)
                              ? v1::ACTIVATION_SOFTMAX
                              : v1::ACTIVATION_SIGMOID);
  }
  spec.set_loss(c.loss == OutputLoss::kSoftmaxCce ? v1::LOSS_CCE
                                                  : v1::LOSS_MSE);
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_GLOROT_UNIFORM);
  spec.mutable_init()->set_seed(42);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(kLearningRate);
  spec.set_dtype(f32 ? v1::DTYPE_FLOAT32 : v1::DTYPE_FLOAT64);
  return spec;
}

// kMinibatchRing minibatches: inputs in [-0.5, 0.5), targets one-hot (cce)
// or uniform in [0, 1) (mse), in the network's precision.
std::vector<v1::Minibatch> ProtoBatches(const BenchCase& c, bool f32) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const int rows = c.batch, in = c.sizes.front(), out = c.sizes.back();
  std::vector<v1::Minibatch> batches;
  for (int i = 0; i < kMinibatchRing; ++i) {
    std::vector<double> x(static_cast<size_t>(rows) * in),
        y(static_cast<size_t>(rows) * out, 0.0);
    for (double& v : x) v = u(rng) - 0.5;
    if (c.loss == OutputLoss::kSoftmaxCce) {
      for (int r = 0; r < rows; ++r) y[r * out + rng() % out] = 1.0;
    } else {
      for (double& v : y) v = u(rng);
    }
    v1::Minibatch b;
    auto fill = [f32](v1::Tensor* t, int r, int k,
                      const std::vector<double>& v) {
      t->add_shape(r);
      t->add_shape(k);
      for (double d : v) {
        if (f32) {
          t->add_float_values(static_cast<float>(d));
        } else {
          t->add_double_values(d);
        }
      }
    };
    fill(b.mutable_inputs(), rows, in, x);
    fill(b.mutable_targets(), rows, out, y);
    batches.push_back(std::move(b));
  }
  return batches;
}

void Fail(benchmark::State& state, const absl::Status& s) {
  state.SkipWithError(s.ToString().c_str());
}

// ---------------------------------------------------------------------------
// One in-process server + client for the whole program.
struct Harness {
  std::unique_ptr<service::Server> server;
  EchoServiceImpl echo;
  std::unique_ptr<Client> client;
  // --durability: a second server with the durable store (SQLite in a
  // temporary directory, default commit points), next to `server`, which is
  // ephemeral (the in-memory store).
  std::unique_ptr<service::Server> durable_server;
  std::unique_ptr<Client> durable_client;
  std::string data_dir;
  std::unique_ptr<EchoService::Stub> echo_stub;
  int counter = 0;
};
Harness* g_harness = nullptr;

absl::StatusOr<std::string> NewNetwork(const BenchCase& c, bool f32,
                                       Client* client = nullptr) {
  if (client == nullptr) client = g_harness->client.get();
  auto net = client->CreateNetwork(
      ProtoSpec(c, f32), "bench-" + std::to_string(g_harness->counter++));
  if (!net.ok()) return net.status();
  return net->name();
}

// Median of per-call latencies, in microseconds.
double MedianUs(std::vector<double> us) {
  if (us.empty()) return 0;
  std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
  return us[us.size() / 2];
}

// TrainStep next to a bare echo RPC of the same request and response
// sizes, alternating call by call so that both see the same machine: on a
// shared 2-core VM the round trip drifts by 2x between benchmarks run a few
// seconds apart, which swamps a 20% difference. The iteration time is one
// echo plus one TrainStep; the counters are the medians of each.
void BM_UnaryPair(benchmark::State& state, const BenchCase& c, bool f32) {
  const std::vector<v1::Minibatch> batches = ProtoBatches(c, f32);
  auto name = NewNetwork(c, f32);
  if (!name.ok()) return Fail(state, name.status());
  // One untimed step, also the response whose size the echo returns.
  auto first = g_harness->client->TrainStep(*name, batches[0]);
  if (!first.ok()) return Fail(state, first.status());
  v1::TrainStepRequest step_request;
  step_request.set_name(*name);
  *step_request.mutable_batch() = batches[0];
  v1::TrainStepResponse step_response;
  *step_response.mutable_result() = *first;
  EchoRequest request;
  request.mutable_payload()->assign(step_request.ByteSizeLong(), 'x');
  request.set_response_bytes(static_cast<int>(step_response.ByteSizeLong()));

  std::vector<double> echo_us, step_us;
  int i = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    EchoResponse response;
    grpc::Status s = g_harness->echo_stub->Echo(&ctx, request, &response);
    if (!s.ok()) return Fail(state, FromGrpc(s));
    const auto t1 = std::chrono::steady_clock::now();
    auto result =
        g_harness->client->TrainStep(*name, batches[i++ % kMinibatchRing]);
    if (!result.ok()) return Fail(state, result.status());
    const auto t2 = std::chrono::steady_clock::now();
    echo_us.push_back(
        std::chrono::duration<double, std::micro>(t1 - t0).count());
    step_us.push_back(
        std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  state.counters["echo_us"] = MedianUs(std::move(echo_us));
  state.counters["train_step_us"] = MedianUs(std::move(step_us));
  state.counters["request_bytes"] = static_cast<double>(request.ByteSizeLong());
  state.counters["response_bytes"] =
      static_cast<double>(step_response.ByteSizeLong());
}

void BM_TrainStream(benchmark::State& state, const BenchCase& c, bool f32,
                    Client* client = nullptr) {
  if (client == nullptr) client = g_harness->client.get();
  const std::vector<v1::Minibatch> batches = ProtoBatches(c, f32);
  auto name = NewNetwork(c, f32, client);
  if (!name.ok()) return Fail(state, name.status());
  TrainOptions options;
  options.report_every = 1;
  auto session = client->OpenTrainStream(*name, options);
  if (!session.ok()) return Fail(state, session.status());
  TrainStream* stream = session->get();
  // One untimed step first (stream setup, the compute thread's
  // scratch), then the writer runs ahead (as far as flow control lets it)
  // while the loop receives one StepResult per iteration. The writer starts
  // inside the timed loop so that no step is computed before the clock runs.
  v1::TrainResponse response;
  if (!stream->Write(batches[0]) || !stream->Read(&response)) {
    return Fail(state, stream->Finish());
  }
  const int64_t steps = static_cast<int64_t>(state.max_iterations);
  std::thread writer;
  bool broken = false;
  for (auto _ : state) {
    if (!writer.joinable()) {
      writer = std::thread([&] {
        for (int64_t i = 1; i <= steps; ++i) {
          if (!stream->Write(batches[i % kMinibatchRing])) return;
        }
        stream->WritesDone();
      });
    }
    if (!stream->Read(&response)) {
      broken = true;
      break;
    }
  }
  if (writer.joinable()) writer.join();
  while (!broken && stream->Read(&response)) {
  }
  absl::Status s = stream->Finish();
  if (broken || !s.ok()) {
    Fail(state, s.ok() ? absl::InternalError("stream ended early") : s);
  }
}

// TrainStep on an ephemeral and a durable network of the same case,
// alternating call by call (as BM_UnaryPair does, for the same reason): a
// durable TrainStep returns once its step is committed to disk.
void BM_DurableStepPair(benchmark::State& state, const BenchCase& c) {
  const std::vector<v1::Minibatch> batches = ProtoBatches(c, true);
  auto ephemeral = NewNetwork(c, true);
  if (!ephemeral.ok()) return Fail(state, ephemeral.status());
  auto durable = NewNetwork(c, true, g_harness->durable_client.get());
  if (!durable.ok()) return Fail(state, durable.status());
  std::vector<double> ephemeral_us, durable_us;
  int i = 0;
  for (auto _ : state) {
    const v1::Minibatch& batch = batches[i++ % kMinibatchRing];
    const auto t0 = std::chrono::steady_clock::now();
    auto a = g_harness->client->TrainStep(*ephemeral, batch);
    if (!a.ok()) return Fail(state, a.status());
    const auto t1 = std::chrono::steady_clock::now();
    auto b = g_harness->durable_client->TrainStep(*durable, batch);
    if (!b.ok()) return Fail(state, b.status());
    const auto t2 = std::chrono::steady_clock::now();
    ephemeral_us.push_back(
        std::chrono::duration<double, std::micro>(t1 - t0).count());
    durable_us.push_back(
        std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  const double e = MedianUs(std::move(ephemeral_us));
  const double d = MedianUs(std::move(durable_us));
  state.counters["ephemeral_us"] = e;
  state.counters["durable_us"] = d;
  state.counters["durable_over_ephemeral"] = e > 0 ? d / e : 0;
}

// Registers the durability comparison (--durability): Train streams with
// the server's default commit points against the ephemeral store, and
// TrainStep latency, for the two cases issue 12 names.
void RegisterDurability() {
  for (const BenchCase& c : BenchCases()) {
    const std::string name = c.name;
    if (name != "2-16-16-1_b32_mse" && name != "784-256-256-10_b128_cce") {
      continue;
    }
    const bool tiny = c.sizes[0] < 100;
    for (bool durable : {false, true}) {
      auto* stream = benchmark::RegisterBenchmark(
          ("durability_stream/" + name + "/f32/" +
           (durable ? "durable" : "ephemeral"))
              .c_str(),
          [&c, durable](benchmark::State& s) {
            BM_TrainStream(s, c, true,
                           durable ? g_harness->durable_client.get()
                                   : g_harness->client.get());
          });
      stream->Unit(benchmark::kMicrosecond)->UseRealTime();
      // Several commit intervals (1 s by default) per measurement.
      stream->MinTime(tiny ? 3.0 : 4.0);
    }
    benchmark::RegisterBenchmark(
        ("durability_train_step/" + name + "/f32").c_str(),
        [&c](benchmark::State& s) { BM_DurableStepPair(s, c); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
}

// ---------------------------------------------------------------------------
// --packing: many small steps per message.

// Seconds for `steps` steps of a Train stream on a new network, sending
// `per_message` minibatches per message and asking for a response every
// `report_every` steps; one untimed message first (stream setup, scratch).
absl::StatusOr<double> TimeStream(const BenchCase& c, bool f32,
                                  const std::vector<v1::Minibatch>& batches,
                                  int per_message, int report_every,
                                  int64_t steps) {
  auto name = NewNetwork(c, f32);
  if (!name.ok()) return name.status();
  TrainOptions options;
  options.report_every = report_every;
  auto opened = g_harness->client->OpenTrainStream(*name, options);
  if (!opened.ok()) return opened.status();
  TrainStream& stream = **opened;
  std::vector<const v1::Minibatch*> pack;
  const auto fill = [&](int64_t first) {
    pack.clear();
    for (int i = 0; i < per_message; ++i) {
      pack.push_back(&batches[(first + i) % kMinibatchRing]);
    }
  };
  fill(0);
  v1::TrainResponse response;
  if (!stream.WriteBatches(pack)) return stream.Finish();
  while (response.batches_applied() < per_message) {
    if (!stream.Read(&response)) return stream.Finish();
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::thread writer([&] {
    for (int64_t done = 0; done < steps; done += per_message) {
      fill(done);
      if (!stream.WriteBatches(pack)) return;
    }
    stream.WritesDone();
  });
  while (stream.Read(&response)) {
  }
  writer.join();
  const auto t1 = std::chrono::steady_clock::now();
  if (absl::Status s = stream.Finish(); !s.ok()) return s;
  const int64_t sent = (steps + per_message - 1) / per_message * per_message;
  if (response.batches_applied() != per_message + sent) {
    return absl::InternalError(
        absl::StrCat("stream applied ", response.batches_applied(),
                     " minibatches, sent ", per_message + sent));
  }
  return std::chrono::duration<double>(t1 - t0).count() *
         static_cast<double>(steps) / static_cast<double>(sent);
}

// Seconds for `steps` steps through Client::Train (a resumable
// TrainSession: buffered, packing what is written), on a new network.
absl::StatusOr<double> TimeSession(const BenchCase& c, bool f32,
                                   const std::vector<v1::Minibatch>& ring,
                                   int per_message, int report_every,
                                   int64_t steps) {
  auto name = NewNetwork(c, f32);
  if (!name.ok()) return name.status();
  std::vector<v1::Minibatch> batches;
  batches.reserve(static_cast<size_t>(steps));
  for (int64_t i = 0; i < steps; ++i) {
    batches.push_back(ring[static_cast<size_t>(i % kMinibatchRing)]);
  }
  TrainOptions options;
  options.batches_per_message = per_message;
  options.report_every = report_every;
  const auto t0 = std::chrono::steady_clock::now();
  auto last = g_harness->client->Train(*name, batches, options, nullptr);
  const auto t1 = std::chrono::steady_clock::now();
  if (!last.ok()) return last.status();
  if (last->step() != steps) {
    return absl::InternalError(
        absl::StrCat("session ended at step ", last->step(), ", sent ", steps));
  }
  return std::chrono::duration<double>(t1 - t0).count();
}

// One iteration measures, back to back on the same machine state: the
// engine in process, the one-per-message stream (1 per message), and
// streams packing 8, 32 and 128 minibatches per message with one response per
// message (and 32 per message with a response per step), and the same
// through Client::Train (TrainSession) at 1 and 32 per message.
// Counters: steps/s of each and the ratios to the one-per-message stream
// and to the engine.
void BM_Packing(benchmark::State& state, const BenchCase& c, bool f32) {
  const std::vector<v1::Minibatch> batches = ProtoBatches(c, f32);
  std::vector<std::pair<engine::MatrixView, engine::MatrixView>> views;
  for (const v1::Minibatch& b : batches) {
    auto x = service::MatrixViewOf(b.inputs(), "inputs");
    auto y = service::MatrixViewOf(b.targets(), "targets");
    if (!x.ok() || !y.ok())
      return Fail(state, x.ok() ? y.status() : x.status());
    views.emplace_back(*x, *y);
  }
  auto net = engine::Network::Create(
      SpecFor(c, f32 ? engine::DType::kFloat32 : engine::DType::kFloat64),
      engine::Limits(), "network.spec");
  if (!net.ok()) return Fail(state, net.status());
  struct Variant {
    const char* name;
    int per_message;
    int report_every;
    int64_t steps;
    bool session;  // through Client::Train (TrainSession), not TrainStream
  };
  static const Variant variants[] = {
      {"stream_1_per_message", 1, 1, 6000, false},
      {"packed_8", 8, 8, 40000, false},
      {"packed_32", 32, 32, 120000, false},
      {"packed_128", 128, 128, 200000, false},
      {"packed_32_report_every_1", 32, 1, 60000, false},
      {"session_1_per_message", 1, 1, 6000, true},
      {"session_32", 32, 32, 100000, true}};
  std::map<std::string, std::vector<double>> rates;
  for (auto _ : state) {
    constexpr int64_t kInProcessSteps = 200000;
    (void)(*net)->TrainStep(views[0].first, views[0].second);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kInProcessSteps; ++i) {
      const auto& [x, y] = views[i % kMinibatchRing];
      benchmark::DoNotOptimize(*(*net)->TrainStep(x, y));
    }
    const auto t1 = std::chrono::steady_clock::now();
    rates["in_process"].push_back(
        kInProcessSteps / std::chrono::duration<double>(t1 - t0).count());
    for (const Variant& v : variants) {
      // One per message goes as `batch` (TrainStream::Write), as every
      // client did before.
      auto seconds = v.session ? TimeSession(c, f32, batches, v.per_message,
                                             v.report_every, v.steps)
                               : TimeStream(c, f32, batches, v.per_message,
                                            v.report_every, v.steps);
      if (!seconds.ok()) return Fail(state, seconds.status());
      rates[v.name].push_back(static_cast<double>(v.steps) / *seconds);
    }
  }
  const auto mean = [&](const std::string& key) {
    double sum = 0;
    for (double r : rates[key]) sum += r;
    return rates[key].empty() ? 0.0 : sum / rates[key].size();
  };
  const double base = mean("stream_1_per_message");
  const double engine_rate = mean("in_process");
  state.counters["in_process_steps_per_s"] = engine_rate;
  for (const auto& [key, unused] : rates) {
    if (key == "in_process") continue;
    const double r = mean(key);
    state.counters[key + "_steps_per_s"] = r;
    if (key != "stream_1_per_message") {
      state.counters[key + "_over_1_per_message"] = base > 0 ? r / base : 0;
    }
    state.counters[key + "_over_in_process"] =
        engine_rate > 0 ? r / engine_rate : 0;
  }
}

void RegisterPacking() {
  for (const BenchCase& c : BenchCases()) {
    if (c.sizes[0] >= 100) continue;  // the tiny networks: 1-1, 2-16-16-1
    for (bool f32 : {true, false}) {
      benchmark::RegisterBenchmark(
          ("packing/" + std::string(c.name) + (f32 ? "/f32" : "/f64")).c_str(),
          [&c, f32](benchmark::State& s) { BM_Packing(s, c, f32); })
          ->Iterations(1)
          ->Unit(benchmark::kSecond)
          ->UseRealTime();
    }
  }
}

template <typename T>
void BM_InProcess(benchmark::State& state, const BenchCase& c) {
  const bool f32 = std::is_same_v<T, float>;
  const std::vector<v1::Minibatch> batches = ProtoBatches(c, f32);
  // The same Eigen::Map over the request's packed values the service uses.
  std::vector<std::pair<engine::MatrixView, engine::MatrixView>> views;
  for (const v1::Minibatch& b : batches) {
    auto x = service::MatrixViewOf(b.inputs(), "inputs");
    auto y = service::MatrixViewOf(b.targets(), "targets");
    if (!x.ok() || !y.ok())
      return Fail(state, x.ok() ? y.status() : x.status());
    views.emplace_back(*x, *y);
  }
  auto net = engine::Network::Create(
      SpecFor(c, f32 ? engine::DType::kFloat32 : engine::DType::kFloat64),
      engine::Limits(), "network.spec");
  if (!net.ok()) return Fail(state, net.status());
  // warm-up
  benchmark::DoNotOptimize((*net)->TrainStep(views[0].first, views[0].second));
  int i = 0;
  for (auto _ : state) {
    const auto& [x, y] = views[i++ % kMinibatchRing];
    benchmark::DoNotOptimize(*(*net)->TrainStep(x, y));
  }
}

// ---------------------------------------------------------------------------
// --rss: a real satlab-server process.
double VmRssBytes(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;
  }
  return 0;
}

void BM_ServerRss(benchmark::State& state, const std::string& server_path,
                  const BenchCase& c, bool f32, int networks) {
  for (auto _ : state) {
    int out_pipe[2];
    if (pipe(out_pipe) != 0) return Fail(state, absl::InternalError("pipe"));
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(out_pipe[1], 1);
      close(out_pipe[0]);
      const std::string max = "--max_networks=" + std::to_string(networks + 10);
      // Default options otherwise (metrics history, HTTP side port on a
      // free port): the RSS a deployment would see.
      execl(server_path.c_str(), server_path.c_str(), "--port=0",
            "--http_port=0", max.c_str(), "--log_level=warn",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out_pipe[1]);
    FILE* out = fdopen(out_pipe[0], "r");
    char line[512] = {0};
    std::string address;
    while (std::fgets(line, sizeof line, out) != nullptr) {
      if (std::strncmp(line, "listening on ", 13) == 0) {
        address = std::string(line + 13);
        while (!address.empty() &&
               (address.back() == '\n' || address.back() == '\r')) {
          address.pop_back();
        }
        break;
      }
    }
    auto stop = [&] {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      fclose(out);
    };
    if (address.empty()) {
      stop();
      return Fail(state, absl::UnavailableError("satlab-server did not start"));
    }
    ClientOptions options;
    options.target = address;
    options.wait_for_ready = true;
    Client client(options);
    auto health = client.CheckHealth("");
    absl::SleepFor(absl::Milliseconds(200));
    const double idle = VmRssBytes(pid);
    const v1::NetworkSpec spec = ProtoSpec(c, f32);
    std::vector<std::string> names;
    names.reserve(networks);
    for (int i = 0; i < networks; ++i) {
      auto net = client.CreateNetwork(spec);
      if (!net.ok()) {
        stop();
        return Fail(state, net.status());
      }
      names.push_back(net->name());
    }
    const double created = VmRssBytes(pid);
    const std::vector<v1::Minibatch> batches = ProtoBatches(c, f32);
    for (const std::string& name : names) {
      auto r = client.TrainStep(name, batches[0]);
      if (!r.ok()) {
        stop();
        return Fail(state, r.status());
      }
    }
    const double stepped = VmRssBytes(pid);
    stop();
    state.counters["networks"] = networks;
    state.counters["rss_before_bytes"] = idle;
    state.counters["rss_after_bytes"] = created;
    state.counters["rss_after_step_bytes"] = stepped;
  }
}

int RunRss(int argc, char** argv, const std::string& server_path) {
  // 1-1 in float32 only (its float64 twin differs by 8 bytes a network).
  static const std::pair<const BenchCase*, bool> runs[] = {
      {&BenchCases()[0], true},
      {&BenchCases()[1], true},
      {&BenchCases()[1], false}};
  for (const auto& run : runs) {
    const BenchCase* c = run.first;
    const bool f32 = run.second;
    {
      benchmark::RegisterBenchmark(
          ("server_rss/" + std::string(c->name) + (f32 ? "/f32" : "/f64"))
              .c_str(),
          [c, f32, server_path](benchmark::State& s) {
            BM_ServerRss(s, server_path, *c, f32, 10000);
          })
          ->Iterations(1)
          ->Unit(benchmark::kSecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace satlab::bench

int main(int argc, char** argv) {
  using namespace satlab::bench;
  std::vector<char*> original_argv(argv, argv + argc);
  original_argv.push_back(nullptr);
  const int threads = TakeThreadsFlag(&argc, argv);
  bool rss = false;
  bool durability = false;
  bool packing = false;
  std::string server_path;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--rss") == 0) {
      rss = true;
    } else if (std::strcmp(argv[i], "--durability") == 0) {
      durability = true;
    } else if (std::strcmp(argv[i], "--packing") == 0) {
      packing = true;
    } else if (std::strncmp(argv[i], "--server=", 9) == 0) {
      server_path = argv[i] + 9;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  if (rss) return RunRss(argc, argv, server_path);
  FixThreadEnvironment(threads, threads, false, original_argv.data());
  // The in-process server runs as satlab-server does (server/main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  satlab::service::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.compute_threads = threads;
  Harness harness;
  options.extra_services.push_back(&harness.echo);
  auto server = satlab::service::Server::Create(options);
  if (!server.ok()) {
    std::fprintf(stderr, "Server::Create: %s\n",
                 server.status().ToString().c_str());
    return 1;
  }
  harness.server = std::move(server).value();
  satlab::ClientOptions client_options;
  client_options.target = harness.server->address();
  harness.client = std::make_unique<satlab::Client>(client_options);
  harness.echo_stub = EchoService::NewStub(harness.client->channel());
  g_harness = &harness;

  if (durability) {
    char dir[] = "/tmp/satlab-bench-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    harness.data_dir = dir;
    satlab::service::ServerOptions durable_options = options;
    durable_options.extra_services.clear();
    durable_options.data_dir = harness.data_dir;
    auto durable = satlab::service::Server::Create(durable_options);
    if (!durable.ok()) {
      std::fprintf(stderr, "Server::Create (durable): %s\n",
                   durable.status().ToString().c_str());
      return 1;
    }
    harness.durable_server = std::move(durable).value();
    satlab::ClientOptions durable_client_options;
    durable_client_options.target = harness.durable_server->address();
    harness.durable_client =
        std::make_unique<satlab::Client>(durable_client_options);
    RegisterDurability();
    benchmark::AddCustomContext("data_dir", harness.data_dir);
    benchmark::AddCustomContext("threads", std::to_string(threads));
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    harness.durable_server->Shutdown(absl::Seconds(1));
    harness.server->Shutdown(absl::Seconds(1));
    std::filesystem::remove_all(harness.data_dir);
    return 0;
  }

  if (packing) {
    RegisterPacking();
    benchmark::AddCustomContext("threads", std::to_string(threads));
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    harness.server->Shutdown(absl::Seconds(1));
    return 0;
  }

  for (const BenchCase& c : BenchCases()) {
    const bool tiny = c.sizes[0] < 100;
    for (bool f32 : {true, false}) {
      const std::string suffix = std::string(c.name) + (f32 ? "/f32" : "/f64");
      if (tiny) {
        benchmark::RegisterBenchmark(
            ("grpc_unary_pair/" + suffix).c_str(),
            [&c, f32](benchmark::State& s) { BM_UnaryPair(s, c, f32); })
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
      auto* stream = benchmark::RegisterBenchmark(
          ("grpc_stream/" + suffix).c_str(),
          [&c, f32](benchmark::State& s) { BM_TrainStream(s, c, f32); });
      stream->Unit(benchmark::kMicrosecond)->UseRealTime();
      // Enough steps that the pipeline's fill and drain do not dominate.
      if (!tiny) stream->MinTime(0.25);
      if (f32) {
        benchmark::RegisterBenchmark(
            ("grpc_in_process/" + suffix).c_str(),
            [&c](benchmark::State& s) { BM_InProcess<float>(s, c); })
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      } else {
        benchmark::RegisterBenchmark(
            ("grpc_in_process/" + suffix).c_str(),
            [&c](benchmark::State& s) { BM_InProcess<double>(s, c); })
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
    }
  }
  benchmark::AddCustomContext("threads", std::to_string(threads));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  harness.server->Shutdown(absl::Seconds(1));
  return 0;
}
