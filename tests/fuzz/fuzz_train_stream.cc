// The Train stream's message sequence against an in-process server
// (127.0.0.1:0, one compute thread so that steps queue): the input is a
// sequence of raw messages, each sent as-is (valid TrainRequests, mutated
// ones, undecodable bytes), then the client half-closes, cancels, or stops
// reading under a short deadline. Properties: the server survives; the
// stream ends within its deadline with a status a client can act on
// (never UNKNOWN/INTERNAL/DATA_LOSS/UNIMPLEMENTED); OK only if every
// message decoded; batches_applied only grows; afterwards the networks
// accept a TrainStep again (the stream let go of the writer slot).
//
// Input format (tests/fuzz/make_corpus.py writes seeds in it):
//   byte 0: ending, 0 half-close, 1 cancel, 2 no reading + 50 ms deadline,
//           3 half-close after reading each response as it comes
//   then up to 16 records: [flags byte][length, 2 bytes LE][bytes]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/sync_stream.h"
#include "satlab/v1/training_service.pb.h"
#include "server/service/server.h"
#include "tests/fuzz/fuzz_common.h"

namespace satlab::fuzz {
namespace {

namespace pb = ::satlab::v1;
using Stream = grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>;

constexpr char kTrainMethod[] = "/satlab.v1.TrainingService/Train";
constexpr int kMaxMessages = 16;

struct Fixture {
  std::unique_ptr<service::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<Client> client;
};

pb::Tensor Tensor(int rows, int cols, double value) {
  pb::Tensor t;
  t.add_shape(rows);
  t.add_shape(cols);
  for (int i = 0; i < rows * cols; ++i) t.add_double_values(value);
  return t;
}

pb::NetworkSpec SpecA() {  // 2 -> 3 tanh -> 1 sigmoid, bce, float64
  pb::NetworkSpec spec;
  spec.set_input_size(2);
  auto* h = spec.add_layers();
  h->set_units(3);
  h->set_activation(pb::ACTIVATION_TANH);
  auto* o = spec.add_layers();
  o->set_units(1);
  o->set_activation(pb::ACTIVATION_SIGMOID);
  spec.set_loss(pb::LOSS_BCE);
  spec.mutable_init()->set_scheme(pb::INIT_SCHEME_GLOROT_UNIFORM);
  spec.mutable_init()->set_seed(3);
  return spec;
}

pb::NetworkSpec SpecB() {  // 3 -> 3 softmax, cce, float32
  pb::NetworkSpec spec;
  spec.set_input_size(3);
  auto* o = spec.add_layers();
  o->set_units(3);
  o->set_activation(pb::ACTIVATION_SOFTMAX);
  spec.set_loss(pb::LOSS_CCE);
  spec.set_dtype(pb::DTYPE_FLOAT32);
  spec.mutable_optimizer()->mutable_adam()->set_learning_rate(0.01);
  return spec;
}

Fixture& Get() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    service::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.compute_threads = 1;
    options.service.limits = SmallLimits();
    options.service.train_stream_window = 2;
    auto server = service::Server::Create(options);
    if (!server.ok()) {
      std::fprintf(stderr, "server: %s\n", server.status().ToString().c_str());
      std::abort();
    }
    fx->server = *std::move(server);
    fx->channel = grpc::CreateChannel(fx->server->address(),
                                      grpc::InsecureChannelCredentials());
    ClientOptions client_options;
    client_options.target = fx->server->address();
    client_options.timeout = absl::Seconds(10);
    fx->client = std::make_unique<Client>(fx->channel, client_options);
    return fx;
  }();
  return *f;
}

// Fresh networks for every input, so one input's training does not change
// what the next one sees.
void ResetNetworks(Client& client) {
  for (const char* id : {"fz-a", "fz-b"}) {
    (void)client.DeleteNetwork(std::string("networks/") + id);
    auto created = client.CreateNetwork(id[3] == 'a' ? SpecA() : SpecB(), id);
    FUZZ_CHECK(created.ok());
  }
}

// A TrainStep on `name` succeeds once the fuzzed stream has let go of the
// writer slot (at once, or within a few seconds of a cancel).
void CheckWritable(Client& client, const std::string& name, int inputs,
                   int outputs) {
  pb::Minibatch batch;
  *batch.mutable_inputs() = Tensor(1, inputs, 0.5);
  *batch.mutable_targets() = Tensor(1, outputs, 0.0);
  batch.mutable_targets()->set_double_values(0, 1.0);
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    auto result = client.TrainStep(name, batch);
    if (result.ok()) return;
    if (result.status().code() != absl::StatusCode::kAborted ||
        std::chrono::steady_clock::now() > give_up) {
      std::fprintf(stderr, "TrainStep on %s after the stream: %s\n",
                   name.c_str(), result.status().ToString().c_str());
      std::abort();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

bool Acceptable(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::UNIMPLEMENTED:
      return false;
    default:
      return true;
  }
}

}  // namespace
}  // namespace satlab::fuzz

// Undecodable strings are what the fuzzer sends all day: protobuf's log
// line for each one would drown libFuzzer's output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace satlab;        // NOLINT: harness scope
  using namespace satlab::fuzz;  // NOLINT
  if (size == 0) return 0;
  Fixture& fx = Get();
  const int ending = data[0] & 3;
  std::vector<std::string> messages;
  size_t pos = 1;
  while (pos + 3 <= size && static_cast<int>(messages.size()) < kMaxMessages) {
    const size_t len = data[pos + 1] | (size_t{data[pos + 2]} << 8);
    pos += 3;
    const size_t take = std::min(len, size - pos);
    messages.emplace_back(reinterpret_cast<const char*>(data + pos), take);
    pos += take;
  }
  bool all_decodable = true;
  for (const std::string& m : messages) {
    pb::TrainRequest request;
    all_decodable = all_decodable && request.ParseFromString(m);
  }

  ResetNetworks(*fx.client);
  grpc::ClientContext ctx;
  const auto budget = ending == 2 ? std::chrono::milliseconds(50)
                                  : std::chrono::milliseconds(5000);
  const auto start = std::chrono::system_clock::now();
  ctx.set_deadline(start + budget);
  std::unique_ptr<Stream> stream(
      grpc::internal::
          ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
              fx.channel.get(),
              grpc::internal::RpcMethod(
                  kTrainMethod, grpc::internal::RpcMethod::BIDI_STREAMING),
              &ctx));

  int64_t last_applied = 0;
  std::thread reader;
  if (ending != 2) {
    reader = std::thread([&] {
      grpc::ByteBuffer buffer;
      while (stream->Read(&buffer)) {
        pb::TrainResponse response;
        std::vector<grpc::Slice> slices;
        FUZZ_CHECK(buffer.Dump(&slices).ok());
        std::string bytes;
        for (const auto& s : slices) {
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
        FUZZ_CHECK(response.ParseFromString(bytes));
        FUZZ_CHECK(response.batches_applied() > last_applied);
        last_applied = response.batches_applied();
      }
    });
  }
  for (const std::string& m : messages) {
    grpc::Slice slice(m);
    grpc::ByteBuffer buffer(&slice, 1);
    if (!stream->Write(buffer)) break;  // the server ended the stream
  }
  if (ending == 1) {
    ctx.TryCancel();
  } else {
    stream->WritesDone();
  }
  if (reader.joinable()) reader.join();
  const grpc::Status status = stream->Finish();
  const auto elapsed = std::chrono::system_clock::now() - start;

  if (elapsed > budget + std::chrono::seconds(10)) {
    std::fprintf(
        stderr, "stream took %lld ms (deadline %lld ms)\n",
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(elapsed)
                .count()),
        static_cast<long long>(budget.count()));
    std::abort();
  }
  if (!Acceptable(status.error_code())) {
    std::fprintf(stderr, "stream ended with code %d: %s\n",
                 static_cast<int>(status.error_code()),
                 status.error_message().c_str());
    std::abort();
  }
  if (status.ok()) {
    FUZZ_CHECK(all_decodable);
  }
  CheckWritable(*fx.client, "networks/fz-a", 2, 1);
  CheckWritable(*fx.client, "networks/fz-b", 3, 3);
  return 0;
}
