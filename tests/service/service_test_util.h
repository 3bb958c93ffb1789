// An in-process satlab server on 127.0.0.1:0 and a client connected to it,
// plus small builders for specs and minibatches.
#ifndef SATLAB_TESTS_SERVICE_SERVICE_TEST_UTIL_H_
#define SATLAB_TESTS_SERVICE_SERVICE_TEST_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "server/service/server.h"

namespace satlab::testing {

class ServiceTest : public ::testing::Test {
 protected:
  // Subclasses may adjust options_ before calling Start().
  void Start() {
    options_.listen_address = "127.0.0.1:0";
    auto server = service::Server::Create(options_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ClientOptions client_options;
    client_options.target = server_->address();
    client_options.timeout = absl::Seconds(20);
    client_ = std::make_unique<Client>(client_options);
  }
  void SetUp() override { Start(); }
  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(2));
  }

  service::ServerOptions options_;
  // Occupies a compute thread (the only one when compute_threads is 1)
  // until the returned notification fires, so later work stays queued.
  std::unique_ptr<absl::Notification> BlockExecutor() {
    auto gate = std::make_unique<absl::Notification>();
    absl::Notification running;
    EXPECT_TRUE(server_->executor()->TrySubmit([&running, gate = gate.get()] {
      running.Notify();
      gate->WaitForNotification();
    }));
    running.WaitForNotification();
    return gate;
  }

  std::unique_ptr<service::Server> server_;
  std::unique_ptr<Client> client_;
};

// One sigmoid neuron with w = b = 2 (the seed example), under `loss`.
inline v1::NetworkSpec NeuronSpec(v1::Loss loss = v1::LOSS_MSE, double w = 2.0,
                                  double b = 2.0) {
  v1::NetworkSpec spec;
  spec.set_input_size(1);
  auto* layer = spec.add_layers();
  layer->set_units(1);
  layer->set_activation(v1::ACTIVATION_SIGMOID);
  spec.set_loss(loss);
  auto* init = spec.mutable_init();
  init->set_scheme(v1::INIT_SCHEME_EXPLICIT);
  auto* params = init->add_parameters();
  *params->mutable_weights() = MakeTensor(1, 1, {w});
  *params->mutable_biases() = MakeVector({b});
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.15);
  return spec;
}

// input_size-hidden(tanh)-out(softmax or sigmoid) network, seeded init.
inline v1::NetworkSpec SmallSpec(int input_size, int hidden, int outputs,
                                 v1::Loss loss, uint64_t seed,
                                 v1::DType dtype = v1::DTYPE_FLOAT64) {
  v1::NetworkSpec spec;
  spec.set_input_size(input_size);
  auto* h = spec.add_layers();
  h->set_units(hidden);
  h->set_activation(v1::ACTIVATION_TANH);
  auto* o = spec.add_layers();
  o->set_units(outputs);
  o->set_activation(loss == v1::LOSS_CCE ? v1::ACTIVATION_SOFTMAX
                                         : v1::ACTIVATION_SIGMOID);
  spec.set_loss(loss);
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_GLOROT_UNIFORM);
  spec.mutable_init()->set_seed(seed);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.5);
  spec.mutable_optimizer()->mutable_sgd()->set_momentum(0.9);
  spec.set_dtype(dtype);
  return spec;
}

// A deterministic minibatch: inputs in [-1, 1), one-hot (or 0/1) targets.
inline v1::Minibatch MakeBatch(int rows, int inputs, int outputs, int salt) {
  std::vector<double> x, y;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < inputs; ++c) {
      x.push_back(((r * 7 + c * 13 + salt * 31) % 17) / 8.5 - 1.0);
    }
    const int cls = (r + salt) % std::max(outputs, 2);
    for (int c = 0; c < outputs; ++c) {
      y.push_back(outputs == 1 ? (cls == 1 ? 1.0 : 0.0)
                               : (c == cls ? 1.0 : 0.0));
    }
  }
  v1::Minibatch batch;
  *batch.mutable_inputs() = MakeTensor(rows, inputs, x);
  *batch.mutable_targets() = MakeTensor(rows, outputs, y);
  return batch;
}

}  // namespace satlab::testing

#endif  // SATLAB_TESTS_SERVICE_SERVICE_TEST_UTIL_H_
