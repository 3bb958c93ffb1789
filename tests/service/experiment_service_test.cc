// RunExperiment over a real in-process gRPC server.
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/scalar_nielsen.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using ::testing::HasSubstr;

v1::ExperimentVariant Variant(v1::Activation output, v1::Loss loss) {
  v1::ExperimentVariant v;
  v.set_output_activation(output);
  v.set_loss(loss);
  return v;
}

v1::RunExperimentRequest Nielsen(double w, double b, int epochs) {
  v1::RunExperimentRequest request;
  v1::ExperimentSpec& spec = *request.mutable_spec();
  spec.mutable_dataset()->mutable_builtin()->set_kind(
      v1::DATASET_KIND_SINGLE_SAMPLE);
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
  auto* p = spec.mutable_init()->add_parameters();
  *p->mutable_weights() = MakeTensor(1, 1, {w});
  *p->mutable_biases() = MakeVector({b});
  *spec.add_variants() = Variant(v1::ACTIVATION_SIGMOID, v1::LOSS_MSE);
  *spec.add_variants() = Variant(v1::ACTIVATION_SIGMOID, v1::LOSS_BCE);
  spec.set_epochs(epochs);
  spec.set_no_shuffle(true);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.15);
  return request;
}

// k-blobs data, two sigmoid hidden layers, three variants.
v1::RunExperimentRequest Deep(int samples, int epochs, int units = 8) {
  v1::RunExperimentRequest request;
  v1::ExperimentSpec& spec = *request.mutable_spec();
  auto* data = spec.mutable_dataset()->mutable_builtin();
  data->set_kind(v1::DATASET_KIND_K_BLOBS);
  data->set_samples(samples);
  data->set_classes(3);
  data->set_seed(4);
  for (int l = 0; l < 2; ++l) {
    auto* layer = spec.add_hidden_layers();
    layer->set_units(units);
    layer->set_activation(v1::ACTIVATION_SIGMOID);
  }
  spec.mutable_init()->set_seed(9);
  *spec.add_variants() = Variant(v1::ACTIVATION_SOFTMAX, v1::LOSS_CCE);
  *spec.add_variants() = Variant(v1::ACTIVATION_SIGMOID, v1::LOSS_MSE);
  *spec.add_variants() = Variant(v1::ACTIVATION_SOFTMAX, v1::LOSS_MSE);
  spec.set_epochs(epochs);
  spec.set_batch_size(10);
  spec.set_shuffle_seed(3);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.5);
  return request;
}

// curves[variant][epoch], from every streamed message.
struct Result {
  absl::Status status;
  std::vector<std::vector<v1::EpochMetrics>> curves;
  v1::ExperimentSummary summary;
};

Result RunAll(Client& client, const v1::RunExperimentRequest& request,
              absl::Duration timeout = absl::Seconds(60)) {
  Result result;
  result.curves.resize(request.spec().variants_size());
  int64_t last_done = 0;
  auto summary = client.RunExperiment(
      request,
      [&](const v1::RunExperimentResponse& m) {
        EXPECT_EQ(m.epochs_done(), last_done + (m.has_epoch() ? 1 : 0));
        last_done = m.epochs_done();
        if (m.has_epoch()) {
          auto& curve = result.curves.at(m.epoch().variant());
          EXPECT_EQ(m.epoch().epoch(), static_cast<int>(curve.size()));
          curve.push_back(m.epoch());
        }
        return true;
      },
      timeout);
  result.status = summary.status();
  if (summary.ok()) result.summary = *summary;
  return result;
}

using ExperimentServiceTest = ServiceTest;

TEST_F(ExperimentServiceTest, Nielsen_CurvesEqualAPlainScalarSimulation) {
  for (const auto& [w, b] : {std::pair{0.6, 0.9}, std::pair{2.0, 2.0}}) {
    const Result r = RunAll(*client_, Nielsen(w, b, 300));
    ASSERT_TRUE(r.status.ok()) << r.status;
    for (int v = 0; v < 2; ++v) {
      const std::vector<double> expected = ScalarNielsen(w, b, v == 1, 300);
      ASSERT_EQ(r.curves[v].size(), 301u);
      for (int e = 0; e <= 300; ++e) {
        EXPECT_NEAR(r.curves[v][e].loss(), expected[e], 1e-12 * expected[e])
            << "w=" << w << " variant " << v << " epoch " << e;
      }
      EXPECT_EQ(r.summary.variants(v).label(),
                v == 0 ? "sigmoid+mse" : "sigmoid+bce");
    }
  }
}

TEST_F(ExperimentServiceTest, NielsenFromTwoTwo_MseStallsBceFalls) {
  const Result r = RunAll(*client_, Nielsen(2, 2, 300));
  ASSERT_TRUE(r.status.ok()) << r.status;
  const auto& mse = r.curves[0];
  const auto& bce = r.curves[1];
  EXPECT_GT(mse[150].loss(), 0.5 * mse[0].loss());  // still stuck at 150
  EXPECT_LT(bce[30].loss(), 0.5 * bce[0].loss());   // halved within 30
  EXPECT_EQ(r.summary.variants(1).initial_output_attenuation(), 1.0);
  EXPECT_LT(r.summary.variants(0).initial_output_attenuation(), 0.02);
}

TEST_F(ExperimentServiceTest, SameSpecTwiceAnyParallelism_IdenticalCurves) {
  v1::RunExperimentRequest request = Deep(90, 6);
  const Result first = RunAll(*client_, request);
  request.mutable_spec()->set_parallelism(1);
  const Result serial = RunAll(*client_, request);
  request.mutable_spec()->set_parallelism(3);
  const Result parallel = RunAll(*client_, request);
  ASSERT_TRUE(first.status.ok() && serial.status.ok() && parallel.status.ok())
      << first.status << serial.status << parallel.status;
  for (const Result* other : {&serial, &parallel}) {
    for (size_t v = 0; v < first.curves.size(); ++v) {
      ASSERT_EQ(first.curves[v].size(), 7u);
      for (size_t e = 0; e < first.curves[v].size(); ++e) {
        // Bitwise: the messages are equal field by field.
        EXPECT_EQ(first.curves[v][e].SerializeAsString(),
                  other->curves[v][e].SerializeAsString())
            << "variant " << v << " epoch " << e;
      }
    }
  }
}

// Issue 15 item 3: the experiment's tasks (variants side by side, each
// epoch's evaluation beside the next epoch's training) on 1, 2 or 4 compute
// threads give the same bits. RunAll checks that each variant's messages
// come in epoch order and epochs_done counts up by one; the stored
// experiment (GetExperiment) keeps each variant's curve in epoch order.
TEST_F(ExperimentServiceTest, OneTwoFourComputeThreads_BitwiseIdenticalCurves) {
  // 40 units: the whole-data evaluations' products go to OpenBLAS.
  const v1::RunExperimentRequest request = Deep(150, 8, 40);
  std::vector<Result> results;
  for (int threads : {1, 2, 4}) {
    service::ServerOptions options;
    options.compute_threads = threads;
    options.listen_address = "127.0.0.1:0";
    auto server = service::Server::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    ClientOptions client_options;
    client_options.target = (*server)->address();
    client_options.timeout = absl::Seconds(20);
    Client client(client_options);
    v1::RunExperimentRequest named = request;
    named.set_experiment_id("threads-" + std::to_string(threads));
    results.push_back(RunAll(client, named));
    ASSERT_TRUE(results.back().status.ok())
        << threads << " threads: " << results.back().status;
    auto stored = client.GetExperiment("experiments/" + named.experiment_id());
    ASSERT_TRUE(stored.ok()) << stored.status();
    std::vector<int> next_epoch(3, 0);
    for (const v1::EpochMetrics& m : stored->curves()) {
      EXPECT_EQ(m.epoch(), next_epoch.at(m.variant())++)
          << threads << " threads, variant " << m.variant();
      EXPECT_EQ(
          m.SerializeAsString(),
          results.back().curves[m.variant()][m.epoch()].SerializeAsString());
    }
    EXPECT_EQ(next_epoch, std::vector<int>(3, 9));
    (*server)->Shutdown(absl::Seconds(2));
  }
  for (size_t t = 1; t < results.size(); ++t) {
    for (size_t v = 0; v < results[0].curves.size(); ++v) {
      ASSERT_EQ(results[t].curves[v].size(), 9u);
      for (size_t e = 0; e < results[0].curves[v].size(); ++e) {
        EXPECT_EQ(results[0].curves[v][e].SerializeAsString(),
                  results[t].curves[v][e].SerializeAsString())
            << "run " << t << " variant " << v << " epoch " << e;
      }
      EXPECT_EQ(
          results[0].summary.variants(static_cast<int>(v)).SerializeAsString(),
          results[t].summary.variants(static_cast<int>(v)).SerializeAsString());
    }
  }
}

TEST_F(ExperimentServiceTest, EveryVariant_StartsFromTheSameParameters) {
  const Result r = RunAll(*client_, Deep(90, 1));
  ASSERT_TRUE(r.status.ok()) << r.status;
  // Same hidden parameters -> the same hidden activations at epoch 0, for
  // every variant, bit for bit.
  const auto& reference = r.curves[0][0].saturation();
  for (int v = 1; v < 3; ++v) {
    const auto& s = r.curves[v][0].saturation();
    for (int l = 0; l < 2; ++l) {
      EXPECT_EQ(s.layers(l).mean_activation(),
                reference.layers(l).mean_activation())
          << "variant " << v << " layer " << l;
      EXPECT_EQ(s.layers(l).saturated_fraction(),
                reference.layers(l).saturated_fraction());
    }
  }
  // Same output parameters too: both softmax variants give the same outputs.
  EXPECT_EQ(r.curves[0][0].saturation().layers(2).mean_activation(),
            r.curves[2][0].saturation().layers(2).mean_activation());
  // And they are the init the spec asks for: the parameters of a network
  // created with the same scheme and seed, given explicitly, reproduce the
  // curves bit for bit.
  v1::NetworkSpec spec;
  spec.set_input_size(2);
  for (int l = 0; l < 2; ++l) {
    auto* layer = spec.add_layers();
    layer->set_units(8);
    layer->set_activation(v1::ACTIVATION_SIGMOID);
  }
  auto* out = spec.add_layers();
  out->set_units(3);
  out->set_activation(v1::ACTIVATION_SIGMOID);
  spec.set_loss(v1::LOSS_MSE);
  spec.mutable_init()->set_seed(9);
  auto network = client_->CreateNetwork(spec);
  ASSERT_TRUE(network.ok()) << network.status();
  auto params = client_->GetParameters(network->name());
  ASSERT_TRUE(params.ok());
  v1::RunExperimentRequest explicit_init = Deep(90, 1);
  auto* init = explicit_init.mutable_spec()->mutable_init();
  init->set_scheme(v1::INIT_SCHEME_EXPLICIT);
  for (const auto& layer : params->layers()) {
    auto* p = init->add_parameters();
    *p->mutable_weights() = layer.weights();
    *p->mutable_biases() = layer.biases();
  }
  const Result same = RunAll(*client_, explicit_init);
  ASSERT_TRUE(same.status.ok()) << same.status;
  for (int v = 0; v < 3; ++v) {
    EXPECT_EQ(same.curves[v][1].SerializeAsString(),
              r.curves[v][1].SerializeAsString())
        << "variant " << v;
  }
}

TEST_F(ExperimentServiceTest, SlowReader_GetsEveryEpochInOrder) {
  // 2 x 3001 messages, far more than the server queues before its workers
  // pause; the reader dawdles at first so they do pause.
  const v1::RunExperimentRequest request = Nielsen(2, 2, 3000);
  int seen = 0;
  std::vector<int> next_epoch(2, 0);
  auto summary =
      client_->RunExperiment(request, [&](const v1::RunExperimentResponse& m) {
        if (++seen < 20) absl::SleepFor(absl::Milliseconds(20));
        if (m.has_epoch()) {
          EXPECT_EQ(m.epoch().epoch(), next_epoch[m.epoch().variant()]++);
        }
        return true;
      });
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(next_epoch[0], 3001);
  EXPECT_EQ(next_epoch[1], 3001);
  EXPECT_EQ(seen, 2 * 3001 + 1);
}

TEST_F(ExperimentServiceTest, BadSpecs_InvalidArgumentNamingTheField) {
  struct Case {
    const char* name;
    v1::RunExperimentRequest request;
    absl::StatusCode code;
    const char* message;
  };
  std::vector<Case> cases;
  {
    Case c{"epochs 0", Nielsen(2, 2, 0), absl::StatusCode::kInvalidArgument,
           "spec.epochs: expected >= 1, got 0"};
    cases.push_back(c);
  }
  {
    Case c{"bce on softmax", Deep(30, 1), absl::StatusCode::kInvalidArgument,
           "spec.variants[1].loss: bce needs a sigmoid output layer, got "
           "softmax"};
    auto* v = c.request.mutable_spec()->mutable_variants(1);
    v->set_output_activation(v1::ACTIVATION_SOFTMAX);
    v->set_loss(v1::LOSS_BCE);
    cases.push_back(c);
  }
  {
    Case c{"no dataset", Deep(30, 1), absl::StatusCode::kInvalidArgument,
           "spec.dataset: expected builtin or inline data"};
    c.request.mutable_spec()->clear_dataset();
    cases.push_back(c);
  }
  {
    Case c{"unspecified loss", Deep(30, 1), absl::StatusCode::kInvalidArgument,
           "spec.variants[2].loss: expected a satlab.v1.Loss"};
    c.request.mutable_spec()->mutable_variants(2)->clear_loss();
    cases.push_back(c);
  }
  {
    Case c{"ragged inline", Nielsen(2, 2, 3),
           absl::StatusCode::kInvalidArgument,
           "spec.dataset.inline.targets: expected 2 rows"};
    auto* data = c.request.mutable_spec()->mutable_dataset()->mutable_inline_();
    *data->mutable_inputs() = MakeTensor(2, 1, {1, 2});
    *data->mutable_targets() = MakeTensor(1, 1, {0});
    cases.push_back(c);
  }
  {
    Case c{"too many rows", Deep(1'000'000, 1),
           absl::StatusCode::kResourceExhausted,
           "spec.dataset.builtin.samples: expected at most 100000"};
    cases.push_back(c);
  }
  {
    Case c{"too much work", Deep(100'000, 100'000, 64),
           absl::StatusCode::kResourceExhausted, "work limit"};
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    const Result r = RunAll(*client_, c.request);
    EXPECT_EQ(r.status.code(), c.code) << c.name << ": " << r.status;
    EXPECT_THAT(std::string(r.status.message()), HasSubstr(c.message))
        << c.name;
  }
}

// One compute thread: a call can only run if the cancelled one let go.
class OneThreadTest : public ServiceTest {
 protected:
  void SetUp() override {
    options_.compute_threads = 1;
    Start();
  }
};

TEST_F(OneThreadTest, Cancelled_FreesTheServerPromptly) {
  // Minutes of work if it were not stopped.
  const v1::RunExperimentRequest big = Deep(4000, 300, 64);
  std::atomic<int> messages{0};
  const auto start = std::chrono::steady_clock::now();
  auto cancelled =
      client_->RunExperiment(big, [&](const v1::RunExperimentResponse&) {
        return ++messages < 4;  // cancel after epoch 0 of every variant + 1
      });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  const auto small_start = std::chrono::steady_clock::now();
  const Result small = RunAll(*client_, Nielsen(2, 2, 20), absl::Seconds(10));
  const auto small_end = std::chrono::steady_clock::now();
  ASSERT_TRUE(small.status.ok()) << small.status;
  const double wait_ms =
      std::chrono::duration<double, std::milli>(small_end - small_start)
          .count();
  EXPECT_LT(wait_ms, 1000) << "the next call waited for the cancelled one";
  EXPECT_EQ(server_->executor()->queued(), 0);
  std::cout
      << "cancel -> next call completed in " << wait_ms << " ms (total "
      << std::chrono::duration<double, std::milli>(small_end - start).count()
      << " ms)\n";
}

TEST_F(OneThreadTest, Deadline_StopsTheComputeAndFreesTheServer) {
  const Result r =
      RunAll(*client_, Deep(4000, 300, 64), absl::Milliseconds(300));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  const auto start = std::chrono::steady_clock::now();
  const Result small = RunAll(*client_, Nielsen(2, 2, 20), absl::Seconds(10));
  ASSERT_TRUE(small.status.ok()) << small.status;
  const double wait_ms = std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - start)
                             .count();
  EXPECT_LT(wait_ms, 1000);
}

}  // namespace
}  // namespace satlab::testing
