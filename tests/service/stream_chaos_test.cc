// Stream chaos (issue 10): many Train, WatchMetrics and RunExperiment
// streams against one in-process server, each a scenario drawn from a
// seeded generator: mixed networks (so streams collide on writer slots),
// bad minibatches, a network name switched mid-stream, undecodable raw bytes
// mid-stream (through a generic stub), cancels, short deadlines,
// half-closes, readers that stop reading, streams that go idle.
//
// Each stream must end with a code its scenario allows; afterwards the
// server still serves, no stream or writer slot is left held, no buffered
// byte is left charged, and a normal Train stream still equals TrainSteps
// bitwise.
//
// SATLAB_CHAOS_STREAMS (default 10000) sets the count, SATLAB_CHAOS_SEED
// (default 1) the seed: stream i's scenario depends only on (seed, i), so a
// failure names a scenario that can be replayed; which streams overlap in
// time depends on the machine.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "satlab/v1/training_service.grpc.pb.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using Code = grpc::StatusCode;

constexpr int kNetworks = 12;
constexpr int kNeurons = kNetworks / 2;
constexpr int kClientThreads = 16;
constexpr absl::Duration kIdleTimeout = absl::Milliseconds(300);

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value == nullptr ? fallback : std::strtoll(value, nullptr, 10);
}

std::chrono::system_clock::time_point In(int millis) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(millis);
}

std::string NetworkName(int n) { return absl::StrCat("networks/chaos", n); }

// The first kNeurons networks are single sigmoid neurons, the others small
// 3-4-2 networks: a minibatch for one kind is malformed for the other.
v1::Minibatch BatchFor(int network, int salt) {
  return network < kNeurons ? MakeBatch(2, 1, 1, salt)
                            : MakeBatch(3, 3, 2, salt);
}

// Another network of the same kind (so only the name is wrong).
int SameKind(int network) {
  const int base = network < kNeurons ? 0 : kNeurons;
  return base + (network - base + 1) % kNeurons;
}

std::string CodeName(Code code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : absl::StrCat("code", i);
}

// What one stream did: its scenario, the code it ended with and the codes
// its scenario allows.
struct Outcome {
  Outcome(std::string scenario_in, grpc::Status status_in,
          std::set<Code> allowed_in)
      : scenario(std::move(scenario_in)),
        status(std::move(status_in)),
        allowed(std::move(allowed_in)) {}

  std::string scenario;
  grpc::Status status;
  std::set<Code> allowed;
  std::string detail;  // a broken promise other than the code, if any
};

class Chaos {
 public:
  explicit Chaos(std::shared_ptr<grpc::Channel> channel)
      : channel_(channel),
        stub_(v1::TrainingService::NewStub(channel)),
        generic_(channel) {}

  Outcome Run(uint64_t seed, int64_t index) {
    std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(index));
    auto pick = [&rng](int n) {
      return static_cast<int>(
          std::uniform_int_distribution<int>(0, n - 1)(rng));
    };
    const int network = pick(kNetworks);
    const int kind = pick(100);
    if (kind < 20) return TrainNormal(network, 1 + pick(4), pick(3));
    if (kind < 28) return TrainBadBatch(network, 1 + pick(3));
    if (kind < 36) return TrainSwitchedName(network, pick(2) == 0);
    if (kind < 44) return TrainRawBytes(network, pick(3));
    if (kind < 52) return TrainCancel(network, pick(4), pick(2) == 0);
    if (kind < 58) return TrainDeadline(network, 1 + pick(20));
    if (kind < 62) return TrainHalfCloseEmpty();
    if (kind < 68) return TrainStopReading(network, 2 + pick(6));
    if (kind < 69) return TrainIdle(network);
    if (kind < 72) return TrainUnknown(pick(2) == 0);
    if (kind < 78) return Watch(network, pick(4), pick(3));
    if (kind < 81) return WatchBad(pick(2) == 0);
    if (kind < 85) return WatchDeadline(1 + pick(20));
    if (kind < 90) return Experiment(pick(3));
    if (kind < 93) return ExperimentBad();
    return ExperimentCancel(pick(2) == 0, 1 + pick(30));
  }

 private:
  using TrainStream =
      grpc::ClientReaderWriter<v1::TrainRequest, v1::TrainResponse>;

  static v1::TrainRequest Request(int network, int salt, bool named) {
    v1::TrainRequest request;
    if (named) request.set_name(NetworkName(network));
    *request.mutable_batch() = BatchFor(network, salt);
    return request;
  }

  static int64_t Drain(TrainStream& stream) {
    v1::TrainResponse response;
    int64_t applied = 0;
    while (stream.Read(&response)) applied = response.batches_applied();
    return applied;
  }

  // k minibatches, half-close, read everything: OK with all applied, or
  // ABORTED when another stream holds the network.
  Outcome TrainNormal(int network, int k, int report_every) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->Train(&ctx);
    for (int i = 0; i < k; ++i) {
      v1::TrainRequest request = Request(network, i, i == 0);
      if (i == 0) request.set_report_every(report_every);
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
    const int64_t applied = Drain(*stream);
    Outcome out{"train.normal", stream->Finish(), {Code::OK, Code::ABORTED}};
    if (out.status.ok() && applied != k) {
      out.detail = absl::StrCat("batches_applied ", applied, " of ", k);
    }
    return out;
  }

  // A minibatch of the wrong shape after `good` good ones.
  Outcome TrainBadBatch(int network, int good) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->Train(&ctx);
    for (int i = 0; i < good; ++i) stream->Write(Request(network, i, i == 0));
    v1::TrainRequest bad;
    *bad.mutable_batch() = BatchFor((network + kNeurons) % kNetworks, 0);
    stream->Write(bad);
    stream->WritesDone();
    Drain(*stream);
    return {"train.bad_batch",
            stream->Finish(),
            {Code::INVALID_ARGUMENT, Code::ABORTED}};
  }

  // {name: A, batch} then {name: B, batch}, corked into one burst or not.
  Outcome TrainSwitchedName(int network, bool burst) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->Train(&ctx);
    grpc::WriteOptions options;
    if (burst) options.set_buffer_hint();
    stream->Write(Request(network, 0, true), options);
    stream->Write(Request(SameKind(network), 1, true));
    stream->WritesDone();
    Drain(*stream);
    return {"train.switched_name",
            stream->Finish(),
            {Code::INVALID_ARGUMENT, Code::ABORTED}};
  }

  // Valid messages around the raw bytes ff ff ff ff, through a generic
  // stub. The decode interceptor answers INVALID_ARGUMENT (never OK: the
  // reactor alone would take the failed read for a half-close); ABORTED
  // when another stream holds the network.
  Outcome TrainRawBytes(int network, int good_before) {
    std::vector<std::string> messages;
    for (int i = 0; i < good_before; ++i) {
      messages.push_back(Request(network, i, i == 0).SerializeAsString());
    }
    messages.push_back(std::string(4, '\xff'));
    messages.push_back(
        Request(network, 9, good_before == 0).SerializeAsString());
    grpc::CompletionQueue cq;
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto call =
        generic_.PrepareCall(&ctx, "/satlab.v1.TrainingService/Train", &cq);
    auto wait = [&cq]() {
      void* tag;
      bool ok = false;
      cq.Next(&tag, &ok);
      return ok;
    };
    call->StartCall(nullptr);
    bool open = wait();
    for (const std::string& bytes : messages) {
      if (!open) break;
      grpc::Slice slice(bytes);
      grpc::ByteBuffer buffer(&slice, 1);
      call->Write(buffer, nullptr);
      open = wait();
    }
    if (open) {
      call->WritesDone(nullptr);
      wait();
    }
    grpc::ByteBuffer incoming;
    do {
      call->Read(&incoming, nullptr);
    } while (wait());
    grpc::Status status;
    call->Finish(&status, nullptr);
    wait();
    cq.Shutdown();
    void* tag;
    bool ok;
    while (cq.Next(&tag, &ok)) {
    }
    return {"train.raw_bytes", status, {Code::INVALID_ARGUMENT, Code::ABORTED}};
  }

  // Cancelled after `writes` minibatches, before or after reading one.
  Outcome TrainCancel(int network, int writes, bool read_first) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->Train(&ctx);
    for (int i = 0; i < writes; ++i) stream->Write(Request(network, i, i == 0));
    if (read_first && writes > 0) {
      v1::TrainResponse response;
      stream->Read(&response);
    }
    ctx.TryCancel();
    Drain(*stream);
    return {"train.cancel", stream->Finish(), {Code::CANCELLED, Code::ABORTED}};
  }

  // A deadline of a few milliseconds, writes until it bites.
  Outcome TrainDeadline(int network, int millis) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(millis));
    auto stream = stub_->Train(&ctx);
    for (int i = 0; i < 4; ++i) {
      if (!stream->Write(Request(network, i, i == 0))) break;
    }
    stream->WritesDone();
    Drain(*stream);
    return {"train.deadline",
            stream->Finish(),
            {Code::DEADLINE_EXCEEDED, Code::OK, Code::ABORTED}};
  }

  Outcome TrainHalfCloseEmpty() {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->Train(&ctx);
    stream->WritesDone();
    Drain(*stream);
    return {"train.half_close_empty", stream->Finish(), {Code::OK}};
  }

  // Writes and never reads, then goes away (cancel).
  Outcome TrainStopReading(int network, int writes) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->Train(&ctx);
    for (int i = 0; i < writes; ++i) stream->Write(Request(network, i, i == 0));
    absl::SleepFor(absl::Milliseconds(2));
    ctx.TryCancel();
    Drain(*stream);
    return {"train.stop_reading",
            stream->Finish(),
            {Code::CANCELLED, Code::ABORTED}};
  }

  // Only the name, then silence: the server's idle timeout ends it.
  Outcome TrainIdle(int network) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->Train(&ctx);
    v1::TrainRequest open;
    open.set_name(NetworkName(network));
    stream->Write(open);
    Drain(*stream);
    Outcome out{"train.idle",
                stream->Finish(),
                {Code::DEADLINE_EXCEEDED, Code::ABORTED}};
    if (out.status.error_code() == Code::DEADLINE_EXCEEDED &&
        out.status.error_message().find("idle") == std::string::npos) {
      out.detail = "DEADLINE_EXCEEDED without the idle message";
    }
    return out;
  }

  Outcome TrainUnknown(bool malformed) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->Train(&ctx);
    v1::TrainRequest request = Request(0, 0, false);
    request.set_name(malformed ? "networks/" : "networks/ghost");
    stream->Write(request);
    stream->WritesDone();
    Drain(*stream);
    return {malformed ? "train.malformed_name" : "train.unknown_network",
            stream->Finish(),
            {malformed ? Code::INVALID_ARGUMENT : Code::NOT_FOUND}};
  }

  // Replays a network's events, reads `reads` of them (or stops reading),
  // then cancels.
  Outcome Watch(int network, int reads, int mode) {
    grpc::ClientContext ctx;
    // Replays may hold fewer events than `reads` and the network may stay
    // quiet: the deadline then ends the wait.
    ctx.set_deadline(In(1000));
    v1::WatchMetricsRequest request;
    if (mode != 2) request.set_name(NetworkName(network));
    request.set_start_step(mode == 1 ? -1 : 0);
    auto stream = stub_->WatchMetrics(&ctx, request);
    v1::WatchMetricsResponse response;
    // A live-only watch of a quiet network has nothing to read: read only
    // from replays.
    for (int i = 0; i < reads && mode != 1; ++i) {
      if (!stream->Read(&response)) break;
    }
    ctx.TryCancel();
    while (stream->Read(&response)) {
    }
    return {"watch.cancel",
            stream->Finish(),
            {Code::CANCELLED, Code::DEADLINE_EXCEEDED}};
  }

  Outcome WatchBad(bool unknown) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    v1::WatchMetricsRequest request;
    if (unknown) {
      request.set_name("networks/ghost");
    } else {
      request.set_start_step(-5);
    }
    auto stream = stub_->WatchMetrics(&ctx, request);
    v1::WatchMetricsResponse response;
    while (stream->Read(&response)) {
    }
    return {unknown ? "watch.unknown_network" : "watch.bad_start_step",
            stream->Finish(),
            {unknown ? Code::NOT_FOUND : Code::INVALID_ARGUMENT}};
  }

  Outcome WatchDeadline(int millis) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(millis));
    v1::WatchMetricsRequest request;
    request.set_start_step(-1);
    auto stream = stub_->WatchMetrics(&ctx, request);
    v1::WatchMetricsResponse response;
    while (stream->Read(&response)) {
    }
    return {"watch.deadline", stream->Finish(), {Code::DEADLINE_EXCEEDED}};
  }

  static v1::RunExperimentRequest SmallExperiment(int epochs) {
    v1::RunExperimentRequest request;
    v1::ExperimentSpec& spec = *request.mutable_spec();
    spec.set_display_name("chaos");
    auto* data = spec.mutable_dataset()->mutable_builtin();
    data->set_kind(v1::DATASET_KIND_XOR);
    data->set_samples(8);
    data->set_seed(2);
    auto* hidden = spec.add_hidden_layers();
    hidden->set_units(3);
    hidden->set_activation(v1::ACTIVATION_TANH);
    spec.mutable_init()->set_seed(5);
    auto* mse = spec.add_variants();
    mse->set_output_activation(v1::ACTIVATION_SIGMOID);
    mse->set_loss(v1::LOSS_MSE);
    auto* bce = spec.add_variants();
    bce->set_output_activation(v1::ACTIVATION_SIGMOID);
    bce->set_loss(v1::LOSS_BCE);
    spec.set_epochs(epochs);
    spec.set_batch_size(4);
    spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.5);
    return request;
  }

  Outcome Experiment(int extra_epochs) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    auto stream = stub_->RunExperiment(&ctx, SmallExperiment(2 + extra_epochs));
    v1::RunExperimentResponse response;
    bool summary = false;
    while (stream->Read(&response)) summary = response.has_summary();
    Outcome out{"experiment.run", stream->Finish(), {Code::OK}};
    if (out.status.ok() && !summary) out.detail = "no summary at the end";
    return out;
  }

  Outcome ExperimentBad() {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(20000));
    v1::RunExperimentRequest request = SmallExperiment(2);
    request.mutable_spec()->clear_variants();
    auto stream = stub_->RunExperiment(&ctx, request);
    v1::RunExperimentResponse response;
    while (stream->Read(&response)) {
    }
    return {"experiment.invalid", stream->Finish(), {Code::INVALID_ARGUMENT}};
  }

  // Cancelled after the first message, or cut by a short deadline.
  Outcome ExperimentCancel(bool cancel, int millis) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(cancel ? 20000 : millis));
    auto stream = stub_->RunExperiment(&ctx, SmallExperiment(50));
    v1::RunExperimentResponse response;
    if (cancel) {
      stream->Read(&response);
      ctx.TryCancel();
    }
    while (stream->Read(&response)) {
    }
    // A small experiment may finish before the cancel or deadline lands.
    return {cancel ? "experiment.cancel" : "experiment.deadline",
            stream->Finish(),
            {cancel ? Code::CANCELLED : Code::DEADLINE_EXCEEDED, Code::OK}};
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TrainingService::Stub> stub_;
  grpc::GenericStub generic_;
};

class StreamChaosTest : public ServiceTest {
 protected:
  void SetUp() override {
    options_.compute_threads = 2;
    options_.service.streams.idle_timeout = kIdleTimeout;
    Start();
  }
};

TEST_F(StreamChaosTest, ManyHostileStreams_ServerSurvivesAndStaysConsistent) {
  const int64_t streams = EnvInt("SATLAB_CHAOS_STREAMS", 10000);
  const uint64_t seed = static_cast<uint64_t>(EnvInt("SATLAB_CHAOS_SEED", 1));
  for (int n = 0; n < kNetworks; ++n) {
    const v1::NetworkSpec spec =
        n < kNeurons ? NeuronSpec() : SmallSpec(3, 4, 2, v1::LOSS_CCE, n);
    ASSERT_TRUE(client_->CreateNetwork(spec, absl::StrCat("chaos", n)).ok());
  }

  // Two connections, so streams also interleave across transports.
  std::vector<std::unique_ptr<Chaos>> chaos;
  for (int c = 0; c < 2; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    chaos.push_back(std::make_unique<Chaos>(grpc::CreateCustomChannel(
        server_->address(), grpc::InsecureChannelCredentials(), args)));
  }
  absl::Mutex mu;
  std::map<std::string, std::map<Code, int64_t>> seen;
  std::vector<std::string> broken;
  std::atomic<int64_t> next{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kClientThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int64_t i = next++; i < streams; i = next++) {
        Outcome out = chaos[t % 2]->Run(seed, i);
        const Code code = out.status.error_code();
        absl::MutexLock lock(&mu);
        ++seen[out.scenario][code];
        if (out.allowed.count(code) == 0 || !out.detail.empty()) {
          broken.push_back(absl::StrCat(
              "stream ", i, " (", out.scenario, "): ", CodeName(code), " \"",
              out.status.error_message(), "\" ", out.detail));
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const absl::Duration took = absl::Now() - start;

  std::string report = absl::StrCat(streams, " streams, seed ", seed, ", ",
                                    absl::FormatDuration(took), "\n");
  for (const auto& [scenario, codes] : seen) {
    absl::StrAppend(&report, "  ", scenario, ":");
    for (const auto& [code, count] : codes) {
      absl::StrAppend(&report, " ", CodeName(code), "=", count);
    }
    absl::StrAppend(&report, "\n");
  }
  std::printf("%s", report.c_str());
  EXPECT_TRUE(broken.empty())
      << broken.size() << " streams broke a promise:\n"
      << absl::StrJoin(broken.begin(),
                       broken.begin() + std::min<size_t>(broken.size(), 20),
                       "\n");

  // Every stream is gone from the server, and no byte stays charged.
  int open = -1;
  for (int i = 0; i < 500 && open != 0; ++i) {
    open = server_->service()->streams()->open_streams();
    if (open != 0) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(open, 0);
  // A stream returns its last read's unused bytes just after it leaves the
  // registry (train_reactor.cc, OnReadDone), so wait for those too.
  int64_t buffered = -1;
  for (int i = 0; i < 500 && buffered != 0; ++i) {
    buffered = server_->service()->streams()->buffered_bytes();
    if (buffered != 0) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(buffered, 0);
  // The server serves and no writer slot is held: every network reads and
  // takes a TrainStep at once.
  for (int n = 0; n < kNetworks; ++n) {
    EXPECT_TRUE(client_->GetNetwork(NetworkName(n)).ok());
    auto step = client_->TrainStep(NetworkName(n), BatchFor(n, 0));
    EXPECT_TRUE(step.ok()) << NetworkName(n) << ": " << step.status();
  }
  // A normal Train stream still equals the same TrainSteps bitwise.
  const v1::NetworkSpec spec = SmallSpec(3, 4, 2, v1::LOSS_CCE, 42);
  ASSERT_TRUE(client_->CreateNetwork(spec, "ref-stream").ok());
  ASSERT_TRUE(client_->CreateNetwork(spec, "ref-steps").ok());
  std::vector<v1::Minibatch> batches;
  for (int i = 0; i < 6; ++i) batches.push_back(BatchFor(kNeurons, i));
  auto last =
      client_->Train("networks/ref-stream", batches, TrainOptions{}, nullptr);
  ASSERT_TRUE(last.ok()) << last.status();
  for (const auto& batch : batches) {
    ASSERT_TRUE(client_->TrainStep("networks/ref-steps", batch).ok());
  }
  auto streamed = client_->GetParameters("networks/ref-stream");
  auto stepped = client_->GetParameters("networks/ref-steps");
  ASSERT_TRUE(streamed.ok() && stepped.ok());
  EXPECT_EQ(streamed->SerializeAsString(), stepped->SerializeAsString());
}

}  // namespace
}  // namespace satlab::testing
