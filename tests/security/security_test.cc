// Issue 13, server side: API keys, tenants (NOT_FOUND isolation identical
// to an absent name), the admin role, quotas, reflection and HTTP access
// modes. Every claim of docs/security.md names a test here. In-process
// servers on 127.0.0.1:0; calls go through the generated stub with
// `authorization: Bearer <key>` metadata added by hand (the client
// library's key option belongs to the transport work).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "satlab/v1/training_service.grpc.pb.h"
#include "server/app.h"
#include "server/auth/api_keys.h"
#include "server/service/server.h"
#include "server/service/tenancy.h"
#include "tests/service/service_test_util.h"

// After Eigen (through the server headers): it brings <resolv.h>, whose
// _res macro breaks Eigen's headers.
#include <httplib.h>  // NOLINT(build/include_order)

namespace satlab {
namespace {

namespace pb = ::satlab::v1;
using ::testing::HasSubstr;

constexpr char kAlphaKey[] = "alpha-key-0123456789abcdef0123456789";
constexpr char kBetaKey[] = "beta-key-0123456789abcdef01234567890";
constexpr char kAdminKey[] = "admin-key-0123456789abcdef0123456789";

auth::KeyEntry Entry(absl::string_view key, absl::string_view tenant,
                     core::Role role) {
  auto entry = auth::HashKey(key, core::Identity{std::string(tenant), role});
  EXPECT_TRUE(entry.ok()) << entry.status();
  return *entry;
}

service::AuthOptions ThreeKeys() {
  service::AuthOptions auth;
  auth.keys.Add(Entry(kAlphaKey, "alpha", core::Role::kUser));
  auth.keys.Add(Entry(kBetaKey, "beta", core::Role::kUser));
  auth.keys.Add(Entry(kAdminKey, "ops", core::Role::kAdmin));
  return auth;
}

std::unique_ptr<grpc::ClientContext> As(absl::string_view key) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
  if (!key.empty()) {
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", key));
  }
  return ctx;
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.service.auth = ThreeKeys();
    options_.compute_threads = 1;
  }
  void Start() {
    options_.listen_address = "127.0.0.1:0";
    auto server = service::Server::Create(options_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    stub_ = pb::TrainingService::NewStub(channel_);
  }
  void Stop() {
    stub_.reset();
    channel_.reset();
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(2));
    server_.reset();
  }
  void TearDown() override { Stop(); }

  grpc::Status Create(absl::string_view key, absl::string_view id,
                      const pb::NetworkSpec& spec = testing::NeuronSpec()) {
    pb::CreateNetworkRequest request;
    request.set_network_id(std::string(id));
    *request.mutable_network()->mutable_spec() = spec;
    pb::CreateNetworkResponse response;
    return stub_->CreateNetwork(As(key).get(), request, &response);
  }
  absl::StatusOr<pb::Network> Get(absl::string_view key,
                                  absl::string_view name) {
    pb::GetNetworkRequest request;
    request.set_name(std::string(name));
    pb::GetNetworkResponse response;
    grpc::Status s = stub_->GetNetwork(As(key).get(), request, &response);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          s.error_message());
    }
    return response.network();
  }
  std::vector<std::string> List(absl::string_view key) {
    pb::ListNetworksRequest request;
    pb::ListNetworksResponse response;
    grpc::Status s = stub_->ListNetworks(As(key).get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> names;
    for (const pb::Network& n : response.networks()) names.push_back(n.name());
    return names;
  }

  service::ServerOptions options_;
  std::unique_ptr<service::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::TrainingService::Stub> stub_;
};

// --- Authentication ---

TEST_F(SecurityTest, Auth_MissingKey_Unauthenticated) {
  Start();
  EXPECT_EQ(Create("", "n").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  pb::ListNetworksResponse response;
  grpc::Status s =
      stub_->ListNetworks(As("").get(), pb::ListNetworksRequest(), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("missing credentials"));
}

TEST_F(SecurityTest, Auth_WrongKey_Unauthenticated) {
  Start();
  grpc::Status s = Create("not-a-key-0123456789abcdef0123456789", "n");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("not valid"));
  // One character off a real key is the same answer.
  std::string near(kAlphaKey);
  near.back() = near.back() == 'x' ? 'y' : 'x';
  grpc::Status near_miss = Create(near, "n");
  EXPECT_EQ(near_miss.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(near_miss.error_message(), s.error_message());
  // Another scheme than Bearer.
  auto ctx = As("");
  ctx->AddMetadata("authorization", absl::StrCat("Basic ", kAlphaKey));
  pb::ListNetworksResponse response;
  EXPECT_EQ(stub_->ListNetworks(ctx.get(), pb::ListNetworksRequest(), &response)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Nothing was created by any of them.
  EXPECT_TRUE(List(kAdminKey).empty());
}

TEST_F(SecurityTest, Auth_RightKey_Ok) {
  Start();
  grpc::Status s = Create(kAlphaKey, "n");
  EXPECT_TRUE(s.ok()) << s.error_message();
  auto got = Get(kAlphaKey, "networks/n");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->name(), "networks/n");
}

TEST_F(SecurityTest, Auth_HealthNeedsNoKey_Serving) {
  Start();
  // The client library sends no key.
  ClientOptions client_options;
  client_options.target = server_->address();
  Client client(client_options);
  auto serving = client.CheckHealth(service::kServiceName);
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_TRUE(*serving);
}

TEST_F(SecurityTest, Auth_NoKeysConfigured_AuthOffOneImplicitTenant) {
  options_.service.auth = service::AuthOptions();
  Start();
  EXPECT_TRUE(Create("", "n").ok());
  EXPECT_THAT(List(""), ::testing::ElementsAre("networks/n"));
}

// --- Tenants ---

// Every RPC naming a network, as tenant `key` on networks/{id}: its status.
std::vector<std::pair<std::string, grpc::Status>> EveryNamedCall(
    pb::TrainingService::Stub* stub, absl::string_view key,
    absl::string_view name) {
  std::vector<std::pair<std::string, grpc::Status>> out;
  const std::string n(name);
  {
    pb::GetNetworkRequest r;
    r.set_name(n);
    pb::GetNetworkResponse resp;
    out.emplace_back("GetNetwork", stub->GetNetwork(As(key).get(), r, &resp));
  }
  {
    pb::GetParametersRequest r;
    r.set_name(n);
    pb::GetParametersResponse resp;
    out.emplace_back("GetParameters",
                     stub->GetParameters(As(key).get(), r, &resp));
  }
  {
    pb::SetParametersRequest r;
    r.set_name(n);
    auto* layer = r.add_layers();
    *layer->mutable_weights() = MakeTensor(1, 1, {5.0});
    *layer->mutable_biases() = MakeVector({5.0});
    pb::SetParametersResponse resp;
    out.emplace_back("SetParameters",
                     stub->SetParameters(As(key).get(), r, &resp));
  }
  {
    pb::ForwardRequest r;
    r.set_name(n);
    *r.mutable_inputs() = MakeTensor(1, 1, {0.5});
    pb::ForwardResponse resp;
    out.emplace_back("Forward", stub->Forward(As(key).get(), r, &resp));
  }
  {
    pb::ComputeGradientsRequest r;
    r.set_name(n);
    *r.mutable_batch() = testing::MakeBatch(1, 1, 1, 0);
    pb::ComputeGradientsResponse resp;
    out.emplace_back("ComputeGradients",
                     stub->ComputeGradients(As(key).get(), r, &resp));
  }
  {
    pb::TrainStepRequest r;
    r.set_name(n);
    *r.mutable_batch() = testing::MakeBatch(1, 1, 1, 0);
    pb::TrainStepResponse resp;
    out.emplace_back("TrainStep", stub->TrainStep(As(key).get(), r, &resp));
  }
  {
    pb::EvaluateRequest r;
    r.set_name(n);
    *r.mutable_data() = testing::MakeBatch(1, 1, 1, 0);
    pb::EvaluateResponse resp;
    out.emplace_back("Evaluate", stub->Evaluate(As(key).get(), r, &resp));
  }
  {
    auto ctx = As(key);
    auto stream = stub->Train(ctx.get());
    pb::TrainRequest r;
    r.set_name(n);
    *r.mutable_batch() = testing::MakeBatch(1, 1, 1, 0);
    stream->Write(r);
    stream->WritesDone();
    pb::TrainResponse resp;
    while (stream->Read(&resp)) {
    }
    out.emplace_back("Train", stream->Finish());
  }
  {
    pb::WatchMetricsRequest r;
    r.set_name(n);
    auto ctx = As(key);
    auto reader = stub->WatchMetrics(ctx.get(), r);
    pb::WatchMetricsResponse resp;
    while (reader->Read(&resp)) {
    }
    out.emplace_back("WatchMetrics", reader->Finish());
  }
  {
    pb::ExportNetworkRequest r;
    r.set_name(n);
    auto ctx = As(key);
    auto reader = stub->ExportNetwork(ctx.get(), r);
    pb::ExportNetworkResponse resp;
    while (reader->Read(&resp)) {
    }
    out.emplace_back("ExportNetwork", reader->Finish());
  }
  {
    pb::DeleteNetworkRequest r;
    r.set_name(n);
    pb::DeleteNetworkResponse resp;
    out.emplace_back("DeleteNetwork",
                     stub->DeleteNetwork(As(key).get(), r, &resp));
  }
  return out;
}

TEST_F(SecurityTest, Tenants_OtherTenantsNetwork_NotFoundIdenticalToAbsent) {
  Start();
  // Tenant beta on networks/n while nobody has it ...
  const auto absent = EveryNamedCall(stub_.get(), kBetaKey, "networks/n");
  // ... and once alpha has it: the same codes and messages, call by call.
  ASSERT_TRUE(Create(kAlphaKey, "n").ok());
  const auto foreign = EveryNamedCall(stub_.get(), kBetaKey, "networks/n");
  ASSERT_EQ(absent.size(), foreign.size());
  for (size_t i = 0; i < absent.size(); ++i) {
    SCOPED_TRACE(absent[i].first);
    EXPECT_EQ(foreign[i].second.error_code(), grpc::StatusCode::NOT_FOUND)
        << foreign[i].second.error_message();
    EXPECT_EQ(foreign[i].second.error_code(), absent[i].second.error_code());
    EXPECT_EQ(foreign[i].second.error_message(),
              absent[i].second.error_message());
    EXPECT_THAT(foreign[i].second.error_message(), HasSubstr("networks/n"));
    EXPECT_THAT(foreign[i].second.error_message(),
                ::testing::Not(HasSubstr("alpha")));
  }
  // Nothing changed for alpha: still there, still at step 0, w = 2.
  auto got = Get(kAlphaKey, "networks/n");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->step(), 0);
  pb::GetParametersRequest r;
  r.set_name("networks/n");
  pb::GetParametersResponse params;
  ASSERT_TRUE(stub_->GetParameters(As(kAlphaKey).get(), r, &params).ok());
  EXPECT_EQ(params.layers(0).weights().double_values(0), 2.0);
}

TEST_F(SecurityTest, Tenants_SameIdInTwoTenants_BothCreatedNoLeak) {
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "shared").ok());
  grpc::Status beta = Create(kBetaKey, "shared");
  EXPECT_TRUE(beta.ok()) << beta.error_message();
  // Each sees its own; the same id again in one tenant is ALREADY_EXISTS.
  EXPECT_EQ(Create(kBetaKey, "shared").error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Create(kBetaKey, "shared").error_message(),
            Create(kBetaKey, "shared").error_message());
  EXPECT_THAT(Create(kBetaKey, "shared").error_message(),
              ::testing::Not(HasSubstr("beta.")));
}

TEST_F(SecurityTest, Tenants_List_ShowsOnlyOwnAndAdminSeesAll) {
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "a1").ok());
  ASSERT_TRUE(Create(kAlphaKey, "a2").ok());
  ASSERT_TRUE(Create(kBetaKey, "b1").ok());
  ASSERT_TRUE(Create(kAdminKey, "global").ok());
  EXPECT_THAT(List(kAlphaKey),
              ::testing::ElementsAre("networks/a1", "networks/a2"));
  EXPECT_THAT(List(kBetaKey), ::testing::ElementsAre("networks/b1"));
  EXPECT_THAT(List(kAdminKey),
              ::testing::ElementsAre("networks/alpha.a1", "networks/alpha.a2",
                                     "networks/beta.b1", "networks/global"));
  // Paging within a tenant stays within it.
  pb::ListNetworksRequest request;
  request.set_page_size(1);
  pb::ListNetworksResponse page;
  ASSERT_TRUE(stub_->ListNetworks(As(kAlphaKey).get(), request, &page).ok());
  ASSERT_EQ(page.networks_size(), 1);
  EXPECT_EQ(page.next_page_token(), "a1");
  request.set_page_token(page.next_page_token());
  ASSERT_TRUE(stub_->ListNetworks(As(kAlphaKey).get(), request, &page).ok());
  ASSERT_EQ(page.networks_size(), 1);
  EXPECT_EQ(page.networks(0).name(), "networks/a2");
  EXPECT_EQ(page.next_page_token(), "");
}

TEST_F(SecurityTest, Tenants_Admin_GetsTrainsAndDeletesAnyTenantsNetwork) {
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "n").ok());
  auto got = Get(kAdminKey, "networks/alpha.n");
  ASSERT_TRUE(got.ok()) << got.status();
  pb::TrainStepRequest step;
  step.set_name("networks/alpha.n");
  *step.mutable_batch() = testing::MakeBatch(1, 1, 1, 0);
  pb::TrainStepResponse stepped;
  ASSERT_TRUE(stub_->TrainStep(As(kAdminKey).get(), step, &stepped).ok());
  EXPECT_EQ(Get(kAlphaKey, "networks/n")->step(), 1);
  pb::DeleteNetworkRequest del;
  del.set_name("networks/alpha.n");
  pb::DeleteNetworkResponse deleted;
  ASSERT_TRUE(stub_->DeleteNetwork(As(kAdminKey).get(), del, &deleted).ok());
  EXPECT_EQ(Get(kAlphaKey, "networks/n").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SecurityTest, Tenants_WatchAll_SeesOnlyOwnEvents) {
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "a").ok());
  ASSERT_TRUE(Create(kBetaKey, "b").ok());
  for (const char* key : {kAlphaKey, kBetaKey}) {
    pb::TrainStepRequest step;
    step.set_name(key == kAlphaKey ? "networks/a" : "networks/b");
    *step.mutable_batch() = testing::MakeBatch(1, 1, 1, 0);
    pb::TrainStepResponse stepped;
    ASSERT_TRUE(stub_->TrainStep(As(key).get(), step, &stepped).ok());
  }
  // Replay everything retained (both steps are in the hub), then stop at
  // the deadline.
  pb::WatchMetricsRequest request;
  request.set_start_step(0);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kBetaKey));
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(1500));
  auto reader = stub_->WatchMetrics(&ctx, request);
  std::vector<std::string> seen;
  pb::WatchMetricsResponse event;
  while (reader->Read(&event)) seen.push_back(event.event().network());
  reader->Finish();
  EXPECT_THAT(seen, ::testing::ElementsAre("networks/b"));
}

TEST_F(SecurityTest, Tenants_ExperimentsOfAnotherTenant_NotFoundAndUnlisted) {
  Start();
  for (const char* key : {kAlphaKey, kBetaKey}) {
    pb::GetExperimentRequest get;
    get.set_name("experiments/e");
    pb::GetExperimentResponse got;
    grpc::Status s = stub_->GetExperiment(As(key).get(), get, &got);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("experiments/e"));
    EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr(".e")));
  }
  pb::ListExperimentsResponse listed;
  ASSERT_TRUE(stub_
                  ->ListExperiments(As(kBetaKey).get(),
                                    pb::ListExperimentsRequest(), &listed)
                  .ok());
  EXPECT_EQ(listed.experiments_size(), 0);
}

// A short RunExperiment as `key` (the single-sample neuron, 3 epochs); its
// status.
grpc::Status RunExperiment(pb::TrainingService::Stub* stub,
                           absl::string_view key, absl::string_view id,
                           std::vector<std::string>* experiment_names) {
  pb::RunExperimentRequest request;
  request.set_experiment_id(std::string(id));
  pb::ExperimentSpec& spec = *request.mutable_spec();
  spec.mutable_dataset()->mutable_builtin()->set_kind(
      pb::DATASET_KIND_SINGLE_SAMPLE);
  spec.mutable_init()->set_scheme(pb::INIT_SCHEME_EXPLICIT);
  auto* p = spec.mutable_init()->add_parameters();
  *p->mutable_weights() = MakeTensor(1, 1, {2.0});
  *p->mutable_biases() = MakeVector({2.0});
  pb::ExperimentVariant& v = *spec.add_variants();
  v.set_output_activation(pb::ACTIVATION_SIGMOID);
  v.set_loss(pb::LOSS_MSE);
  spec.set_epochs(3);
  spec.set_no_shuffle(true);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.15);
  auto ctx = As(key);
  auto reader = stub->RunExperiment(ctx.get(), request);
  pb::RunExperimentResponse response;
  while (reader->Read(&response)) {
    experiment_names->push_back(response.experiment());
  }
  return reader->Finish();
}

TEST_F(SecurityTest, Tenants_Experiments_NotFoundIdenticalToAbsentListAdmin) {
  Start();
  auto get = [&](absl::string_view key) {
    pb::GetExperimentRequest request;
    request.set_name("experiments/exp");
    pb::GetExperimentResponse response;
    return stub_->GetExperiment(As(key).get(), request, &response);
  };
  const grpc::Status absent = get(kBetaKey);
  std::vector<std::string> names;
  grpc::Status ran = RunExperiment(stub_.get(), kAlphaKey, "exp", &names);
  ASSERT_TRUE(ran.ok()) << ran.error_message();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "experiments/exp");  // as alpha knows it
  const grpc::Status foreign = get(kBetaKey);
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(foreign.error_code(), absent.error_code());
  EXPECT_EQ(foreign.error_message(), absent.error_message());
  pb::DeleteExperimentRequest del;
  del.set_name("experiments/exp");
  pb::DeleteExperimentResponse deleted;
  EXPECT_EQ(
      stub_->DeleteExperiment(As(kBetaKey).get(), del, &deleted).error_code(),
      grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(get(kAlphaKey).ok());  // still there
  // Beta running the same id gets its own experiment.
  std::vector<std::string> beta_names;
  EXPECT_TRUE(RunExperiment(stub_.get(), kBetaKey, "exp", &beta_names).ok());
  auto list = [&](absl::string_view key) {
    pb::ListExperimentsResponse response;
    EXPECT_TRUE(stub_
                    ->ListExperiments(As(key).get(),
                                      pb::ListExperimentsRequest(), &response)
                    .ok());
    std::vector<std::string> out;
    for (const auto& e : response.experiments()) out.push_back(e.name());
    return out;
  };
  EXPECT_THAT(list(kAlphaKey), ::testing::ElementsAre("experiments/exp"));
  EXPECT_THAT(list(kAdminKey), ::testing::ElementsAre("experiments/alpha.exp",
                                                      "experiments/beta.exp"));
}

TEST_F(SecurityTest, Quota_NetworksCountsImports_ResourceExhausted) {
  options_.service.auth.quotas.networks = 1;
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "a").ok());
  // Export it (alpha), then import the file as a second network.
  std::string file;
  {
    pb::ExportNetworkRequest request;
    request.set_name("networks/a");
    auto ctx = As(kAlphaKey);
    auto reader = stub_->ExportNetwork(ctx.get(), request);
    pb::ExportNetworkResponse chunk;
    while (reader->Read(&chunk)) file += chunk.data();
    ASSERT_TRUE(reader->Finish().ok());
  }
  auto import = [&](absl::string_view key, absl::string_view id) {
    auto ctx = As(key);
    pb::ImportNetworkResponse response;
    auto writer = stub_->ImportNetwork(ctx.get(), &response);
    pb::ImportNetworkRequest request;
    request.set_network_id(std::string(id));
    request.set_total_bytes(static_cast<int64_t>(file.size()));
    request.set_data(file);
    writer->Write(request);
    writer->WritesDone();
    return writer->Finish();
  };
  grpc::Status over = import(kAlphaKey, "b");
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(over.error_message(), HasSubstr("quota networks"));
  // Beta imports the same file into its own namespace, under its own count.
  grpc::Status beta = import(kBetaKey, "a");
  EXPECT_TRUE(beta.ok()) << beta.error_message();
  EXPECT_THAT(List(kBetaKey), ::testing::ElementsAre("networks/a"));
  EXPECT_THAT(List(kAlphaKey), ::testing::ElementsAre("networks/a"));
}

TEST_F(SecurityTest, Tenants_RestartKeepsOwnership_Sqlite) {
  const std::string dir = ::testing::TempDir() + "/security_restart";
  std::filesystem::remove_all(dir);
  options_.data_dir = dir;
  options_.data_sync_full = false;
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "kept").ok());
  Stop();
  Start();
  EXPECT_TRUE(Get(kAlphaKey, "networks/kept").ok());
  EXPECT_EQ(Get(kBetaKey, "networks/kept").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(List(kBetaKey), ::testing::IsEmpty());
  EXPECT_THAT(List(kAdminKey), ::testing::ElementsAre("networks/alpha.kept"));
  Stop();
  std::filesystem::remove_all(dir);
}

// --- Keys kept as hashes only ---

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

TEST_F(SecurityTest, Keys_OnlyHashesInFileDataDirAndMemory) {
  const std::string dir = ::testing::TempDir() + "/security_keys";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/data");
  // The operator's keys file, made with the hashing the tool uses.
  const std::string keys_file = dir + "/keys";
  {
    std::ofstream out(keys_file);
    out << "# tenant role salt hash [quotas]\n"
        << auth::FormatKeyLine(Entry(kAlphaKey, "alpha", core::Role::kUser))
        << " networks=5\n";
  }
  service::AuthOptions auth;
  ASSERT_TRUE(auth.keys.AddFile(keys_file).ok());
  ASSERT_TRUE(
      auth.keys.AddPlaintext(absl::StrCat("beta:user:", kBetaKey)).ok());
  options_.service.auth = auth;
  options_.data_dir = dir + "/data";
  options_.data_sync_full = false;
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "n").ok());
  ASSERT_TRUE(Create(kBetaKey, "m").ok());
  Stop();
  for (const auto& file : std::filesystem::recursive_directory_iterator(dir)) {
    if (!file.is_regular_file()) continue;
    const std::string bytes = ReadAll(file.path());
    SCOPED_TRACE(file.path().string());
    EXPECT_FALSE(absl::StrContains(bytes, kAlphaKey));
    EXPECT_FALSE(absl::StrContains(bytes, kBetaKey));
  }
  // What the server holds per key: tenant, role, salt, hash, quotas.
  for (const auth::KeyEntry& entry : auth.keys.entries()) {
    const std::string held = absl::StrCat(
        entry.identity.tenant,
        absl::string_view(reinterpret_cast<const char*>(entry.salt.data()),
                          entry.salt.size()),
        absl::string_view(reinterpret_cast<const char*>(entry.hash.data()),
                          entry.hash.size()),
        auth::FormatKeyLine(entry));
    EXPECT_FALSE(absl::StrContains(held, kAlphaKey));
    EXPECT_FALSE(absl::StrContains(held, kBetaKey));
  }
  EXPECT_EQ(auth.keys.Verify(kAlphaKey)->identity.tenant, "alpha");
  EXPECT_EQ(auth.keys.Verify(kBetaKey)->identity.tenant, "beta");
  std::filesystem::remove_all(dir);
}

TEST(KeyRingTest, KeysFile_BadLinesAndShortKeys_InvalidArgumentNamingLine) {
  auth::KeyRing ring;
  EXPECT_THAT(ring.AddLine("alpha user 00", "keys:3").message(),
              HasSubstr("keys:3"));
  EXPECT_THAT(ring.AddLine("alpha boss " + std::string(32, '0') + " " +
                               std::string(64, '0'),
                           "keys:4")
                  .message(),
              HasSubstr("user or admin"));
  EXPECT_THAT(ring.AddLine("alpha user " + std::string(32, '0') + " " +
                               std::string(64, '0') + " networks=-1",
                           "keys:5")
                  .message(),
              HasSubstr("networks=N"));
  EXPECT_EQ(
      auth::HashKey("short", {"alpha", core::Role::kUser}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ring.empty());
  EXPECT_TRUE(ring.AddLine("  # only a comment", "keys:6").ok());
  EXPECT_TRUE(ring.empty());
}

// Reports, does not bound: the time Verify takes for a key no entry has and
// for a real key with its last character changed. Both compute every
// entry's HMAC and compare all of them, so the two should match to noise.
TEST(KeyRingTest, Verify_UnknownVersusNearMissKey_TimingReported) {
  auth::KeyRing ring;
  for (int i = 0; i < 16; ++i) {
    ring.Add(Entry(absl::StrCat("tenant-key-", i, "-0123456789abcdef"),
                   absl::StrCat("t", i), core::Role::kUser));
  }
  const std::string unknown = "zzzzzz-key-9-0123456789abcdef";
  std::string near = "tenant-key-9-0123456789abcdef";
  near.back() = 'x';
  ASSERT_EQ(unknown.size(), near.size());
  constexpr int kRounds = 4000;
  std::vector<double> unknown_ns, near_ns;
  for (int i = 0; i < kRounds; ++i) {
    for (int which = 0; which < 2; ++which) {
      const std::string& key = ((i + which) % 2 == 0) ? unknown : near;
      const auto start = std::chrono::steady_clock::now();
      const auth::KeyEntry* found = ring.Verify(key);
      const auto end = std::chrono::steady_clock::now();
      ASSERT_EQ(found, nullptr);
      (&key == &unknown ? unknown_ns : near_ns)
          .push_back(
              std::chrono::duration<double, std::nano>(end - start).count());
    }
  }
  auto pct = [](std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(p * (v.size() - 1))];
  };
  std::printf(
      "[ timing ] Verify over 16 entries, %d rounds each, ns p10/p50/p90:\n"
      "[ timing ]   unknown key:   %.0f / %.0f / %.0f\n"
      "[ timing ]   near-miss key: %.0f / %.0f / %.0f\n"
      "[ timing ]   median difference: %.1f%%\n",
      kRounds, pct(unknown_ns, 0.1), pct(unknown_ns, 0.5), pct(unknown_ns, 0.9),
      pct(near_ns, 0.1), pct(near_ns, 0.5), pct(near_ns, 0.9),
      100.0 * (pct(near_ns, 0.5) - pct(unknown_ns, 0.5)) /
          pct(unknown_ns, 0.5));
  RecordProperty("unknown_p50_ns", static_cast<int>(pct(unknown_ns, 0.5)));
  RecordProperty("near_miss_p50_ns", static_cast<int>(pct(near_ns, 0.5)));
}

// The same over gRPC: UNAUTHENTICATED round trips for both kinds.
TEST_F(SecurityTest, Auth_UnknownVersusNearMissKeyOverGrpc_TimingReported) {
  Start();
  std::string near(kAlphaKey);
  near.back() = 'x';
  std::string unknown(near.size(), 'q');
  constexpr int kRounds = 300;
  std::vector<double> unknown_us, near_us;
  for (int i = 0; i < kRounds; ++i) {
    for (int which = 0; which < 2; ++which) {
      const bool is_unknown = (i + which) % 2 == 0;
      pb::ListNetworksResponse response;
      const auto start = std::chrono::steady_clock::now();
      grpc::Status s =
          stub_->ListNetworks(As(is_unknown ? unknown : near).get(),
                              pb::ListNetworksRequest(), &response);
      const auto end = std::chrono::steady_clock::now();
      ASSERT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
      (is_unknown ? unknown_us : near_us)
          .push_back(
              std::chrono::duration<double, std::micro>(end - start).count());
    }
  }
  auto pct = [](std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(p * (v.size() - 1))];
  };
  std::printf(
      "[ timing ] UNAUTHENTICATED round trip, %d each, us p10/p50/p90:\n"
      "[ timing ]   unknown key:   %.1f / %.1f / %.1f\n"
      "[ timing ]   near-miss key: %.1f / %.1f / %.1f\n",
      kRounds, pct(unknown_us, 0.1), pct(unknown_us, 0.5), pct(unknown_us, 0.9),
      pct(near_us, 0.1), pct(near_us, 0.5), pct(near_us, 0.9));
}

// --- Quotas ---

TEST_F(SecurityTest, Quota_Networks_ResourceExhaustedNamingIt) {
  options_.service.auth.quotas.networks = 2;
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "a").ok());
  ASSERT_TRUE(Create(kAlphaKey, "b").ok());
  grpc::Status third = Create(kAlphaKey, "c");
  EXPECT_EQ(third.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.error_message(), HasSubstr("quota networks"));
  EXPECT_THAT(third.error_message(), HasSubstr("quota is 2"));
  // Another tenant has its own count; the admin has none.
  EXPECT_TRUE(Create(kBetaKey, "a").ok());
  EXPECT_TRUE(Create(kAdminKey, "x").ok());
  EXPECT_TRUE(Create(kAdminKey, "y").ok());
  EXPECT_TRUE(Create(kAdminKey, "z").ok());
  EXPECT_THAT(List(kAlphaKey), ::testing::SizeIs(2));
}

TEST_F(SecurityTest, Quota_Parameters_ResourceExhaustedNamingIt) {
  // SmallSpec(4, 8, 2): 4*8+8 + 8*2+2 = 58 parameters.
  options_.service.auth.quotas.parameters = 100;
  Start();
  const pb::NetworkSpec spec = testing::SmallSpec(4, 8, 2, pb::LOSS_CCE, 1);
  ASSERT_TRUE(Create(kAlphaKey, "a", spec).ok());
  grpc::Status second = Create(kAlphaKey, "b", spec);
  EXPECT_EQ(second.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(second.error_message(), HasSubstr("quota parameters"));
  EXPECT_THAT(second.error_message(), HasSubstr("quota is 100"));
  EXPECT_TRUE(Create(kAlphaKey, "c").ok());  // 2 more fit
}

TEST_F(SecurityTest, Quota_Streams_ResourceExhaustedNamingIt) {
  options_.service.auth.quotas.streams = 1;
  Start();
  ASSERT_TRUE(Create(kAlphaKey, "a").ok());
  pb::TrainStepRequest step;
  step.set_name("networks/a");
  *step.mutable_batch() = testing::MakeBatch(1, 1, 1, 0);
  pb::TrainStepResponse stepped;
  ASSERT_TRUE(stub_->TrainStep(As(kAlphaKey).get(), step, &stepped).ok());
  // The first stream replays that step: once it arrives the stream holds
  // the tenant's one stream.
  pb::WatchMetricsRequest request;
  request.set_name("networks/a");
  request.set_start_step(0);
  auto first_ctx = As(kAlphaKey);
  auto first = stub_->WatchMetrics(first_ctx.get(), request);
  pb::WatchMetricsResponse event;
  ASSERT_TRUE(first->Read(&event));
  auto second_ctx = As(kAlphaKey);
  auto second = stub_->WatchMetrics(second_ctx.get(), request);
  EXPECT_FALSE(second->Read(&event));
  grpc::Status refused = second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("quota streams"));
  // Beta is not counted against alpha.
  auto beta_ctx = As(kBetaKey);
  beta_ctx->set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(300));
  pb::WatchMetricsRequest live_only;
  live_only.set_start_step(-1);
  auto beta = stub_->WatchMetrics(beta_ctx.get(), live_only);
  while (beta->Read(&event)) {
  }
  EXPECT_EQ(beta->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  first_ctx->TryCancel();
  while (first->Read(&event)) {
  }
  first->Finish();
}

TEST_F(SecurityTest, Quota_RequestRate_ResourceExhaustedNamingIt) {
  options_.service.auth.quotas.requests_per_second = 0.5;
  options_.service.auth.quotas.request_burst = 3;
  Start();
  int refused = 0;
  std::string message;
  for (int i = 0; i < 5; ++i) {
    pb::ListNetworksResponse response;
    grpc::Status s = stub_->ListNetworks(As(kAlphaKey).get(),
                                         pb::ListNetworksRequest(), &response);
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      message = s.error_message();
    }
  }
  EXPECT_GE(refused, 1);
  EXPECT_LE(refused, 2);  // the burst of 3 (and maybe one refill) passed
  EXPECT_THAT(message, HasSubstr("quota requests_per_second"));
  // Beta has a bucket of its own.
  EXPECT_THAT(List(kBetaKey), ::testing::IsEmpty());
}

TEST(TenancyTest, Quota_RunningExperiments_LeaseReleasedOnDestruction) {
  service::AuthOptions auth = ThreeKeys();
  auth.quotas.running_experiments = 1;
  service::Tenancy tenancy(auth, /*core=*/nullptr);
  const core::Identity alpha{"alpha", core::Role::kUser};
  {
    auto first = tenancy.StartExperiment(alpha);
    ASSERT_TRUE(first.ok());
    auto second = tenancy.StartExperiment(alpha);
    EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(second.status().message(), HasSubstr("quota experiments"));
    EXPECT_TRUE(tenancy.StartExperiment({"beta", core::Role::kUser}).ok());
    EXPECT_TRUE(tenancy.StartExperiment({"ops", core::Role::kAdmin}).ok());
  }
  EXPECT_TRUE(tenancy.StartExperiment(alpha).ok());
}

TEST(TenancyTest, KeysFileOverride_AppliesToItsTenantOnly) {
  service::AuthOptions auth;
  auth.quotas.networks = 10;
  ASSERT_TRUE(auth.keys
                  .AddLine(auth::FormatKeyLine(
                               Entry(kAlphaKey, "alpha", core::Role::kUser)) +
                               " networks=3 requests_per_second=7",
                           "keys:1")
                  .ok());
  auth.keys.Add(Entry(kBetaKey, "beta", core::Role::kUser));
  service::Tenancy tenancy(auth, nullptr);
  EXPECT_EQ(tenancy.QuotasOf("alpha").networks, 3);
  EXPECT_EQ(tenancy.QuotasOf("alpha").requests_per_second, 7);
  EXPECT_EQ(tenancy.QuotasOf("beta").networks, 10);
}

// --- Reflection ---

namespace refl = ::grpc::reflection::v1alpha;

// Sends `requests` on one ServerReflectionInfo stream as `key` (none when
// empty); the responses and the call's status.
grpc::Status Reflect(const std::shared_ptr<grpc::Channel>& channel,
                     absl::string_view key,
                     const std::vector<refl::ServerReflectionRequest>& requests,
                     std::vector<refl::ServerReflectionResponse>* responses) {
  auto stub = refl::ServerReflection::NewStub(channel);
  auto ctx = As(key);
  auto stream = stub->ServerReflectionInfo(ctx.get());
  for (const auto& request : requests) {
    if (!stream->Write(request)) break;
    refl::ServerReflectionResponse response;
    if (!stream->Read(&response)) break;
    responses->push_back(std::move(response));
  }
  stream->WritesDone();
  return stream->Finish();
}

refl::ServerReflectionRequest ListServices() {
  refl::ServerReflectionRequest request;
  request.set_list_services("");
  return request;
}

std::vector<std::string> ServiceNames(
    const std::vector<refl::ServerReflectionResponse>& responses) {
  std::vector<std::string> names;
  for (const auto& r : responses) {
    for (const auto& s : r.list_services_response().service()) {
      names.push_back(s.name());
    }
  }
  return names;
}

TEST_F(SecurityTest, Reflection_Open_ListsServicesWithoutKey) {
  options_.reflection = service::ReflectionAccess::kOpen;
  Start();
  std::vector<refl::ServerReflectionResponse> responses;
  grpc::Status s = Reflect(channel_, "", {ListServices()}, &responses);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(ServiceNames(responses),
              ::testing::UnorderedElementsAre(
                  "satlab.v1.TrainingService", "grpc.health.v1.Health",
                  "grpc.reflection.v1alpha.ServerReflection"));
}

TEST_F(SecurityTest, Reflection_Open_FileContainingSymbolWithDependencies) {
  options_.reflection = service::ReflectionAccess::kOpen;
  Start();
  refl::ServerReflectionRequest symbol;
  symbol.set_file_containing_symbol("satlab.v1.TrainingService");
  refl::ServerReflectionRequest missing;
  missing.set_file_containing_symbol("satlab.v1.NoSuchThing");
  refl::ServerReflectionRequest by_name;
  by_name.set_file_by_filename("satlab/v1/tensor.proto");
  refl::ServerReflectionRequest empty;
  std::vector<refl::ServerReflectionResponse> responses;
  grpc::Status s =
      Reflect(channel_, "", {symbol, missing, by_name, empty}, &responses);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(responses.size(), 4u);

  std::vector<std::string> files;
  bool found_service = false;
  for (const std::string& blob :
       responses[0].file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(blob));
    files.push_back(file.name());
    for (const auto& service : file.service()) {
      if (file.package() + "." + service.name() != "satlab.v1.TrainingService")
        continue;
      found_service = true;
      std::vector<std::string> methods;
      for (const auto& m : service.method()) methods.push_back(m.name());
      EXPECT_THAT(methods, ::testing::IsSupersetOf(
                               {"CreateNetwork", "GetNetwork", "Train"}));
    }
  }
  EXPECT_TRUE(found_service);
  EXPECT_EQ(files.front(), "satlab/v1/training_service.proto");
  // Its imports come along, so a client can build the descriptors.
  EXPECT_THAT(files, ::testing::IsSupersetOf({"satlab/v1/network.proto",
                                              "satlab/v1/tensor.proto"}));

  EXPECT_EQ(responses[1].error_response().error_code(),
            static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_THAT(responses[1].error_response().error_message(),
              HasSubstr("satlab.v1.NoSuchThing"));
  ASSERT_GE(
      responses[2].file_descriptor_response().file_descriptor_proto_size(), 1);
  google::protobuf::FileDescriptorProto tensor;
  ASSERT_TRUE(tensor.ParseFromString(
      responses[2].file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(tensor.name(), "satlab/v1/tensor.proto");
  EXPECT_EQ(responses[3].error_response().error_code(),
            static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
}

TEST_F(SecurityTest, Reflection_Key_NeedsAValidKey) {
  options_.reflection = service::ReflectionAccess::kKey;
  Start();
  for (absl::string_view key :
       {absl::string_view(""),
        absl::string_view("wrong-key-0123456789abcdef")}) {
    std::vector<refl::ServerReflectionResponse> responses;
    grpc::Status s = Reflect(channel_, key, {ListServices()}, &responses);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << "key \"" << key << "\": " << s.error_message();
    EXPECT_TRUE(responses.empty());
  }
  for (absl::string_view key : {kAlphaKey, kAdminKey}) {
    std::vector<refl::ServerReflectionResponse> responses;
    grpc::Status s = Reflect(channel_, key, {ListServices()}, &responses);
    EXPECT_TRUE(s.ok()) << key << ": " << s.error_message();
    EXPECT_THAT(ServiceNames(responses),
                ::testing::Contains("satlab.v1.TrainingService"));
  }
}

TEST_F(SecurityTest, Reflection_Off_Unimplemented) {
  options_.reflection = service::ReflectionAccess::kOff;
  Start();
  std::vector<refl::ServerReflectionResponse> responses;
  grpc::Status s = Reflect(channel_, kAdminKey, {ListServices()}, &responses);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_TRUE(responses.empty());
}

// --- The HTTP port: /metrics and the dashboard's data ---

struct HttpFixture {
  std::unique_ptr<server::App> app;
  int port = 0;
};

HttpFixture StartApp(http::Access metrics, http::Access dashboard) {
  server::AppOptions options;
  options.server.listen_address = "127.0.0.1:0";
  options.server.compute_threads = 1;
  options.server.service.auth = ThreeKeys();
  options.shutdown_grace = absl::Seconds(2);
  options.http.emplace();
  options.http->host = "127.0.0.1";
  options.http->port = 0;
  options.http->metrics_access = metrics;
  options.http->dashboard_access = dashboard;
  auto app = server::App::Start(options);
  EXPECT_TRUE(app.ok()) << app.status();
  if (!app.ok()) return {};
  HttpFixture f;
  f.port = (*app)->http_port();
  f.app = *std::move(app);
  return f;
}

httplib::Headers Bearer(absl::string_view key) {
  return {{"Authorization", absl::StrCat("Bearer ", key)}};
}

TEST(HttpAccessTest, MetricsBehindKey_401WithoutKey403ForUser200ForAdmin) {
  HttpFixture f = StartApp(http::Access::kKey, http::Access::kKey);
  ASSERT_NE(f.app, nullptr);
  httplib::Client web("127.0.0.1", f.port);
  auto none = web.Get("/metrics");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  auto wrong = web.Get("/metrics", Bearer("wrong-key-0123456789abcdef"));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto user = web.Get("/metrics", Bearer(kAlphaKey));
  ASSERT_TRUE(user);
  EXPECT_EQ(user->status, 403);
  auto admin = web.Get("/metrics", Bearer(kAdminKey));
  ASSERT_TRUE(admin);
  EXPECT_EQ(admin->status, 200);
  EXPECT_THAT(admin->body, HasSubstr("grpc_server_started_total"));
  auto health = web.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST(HttpAccessTest, DashboardBehindKey_EachTenantSeesOnlyItsNetworks) {
  HttpFixture f = StartApp(http::Access::kKey, http::Access::kKey);
  ASSERT_NE(f.app, nullptr);
  auto channel = grpc::CreateChannel(f.app->grpc_address(),
                                     grpc::InsecureChannelCredentials());
  auto stub = pb::TrainingService::NewStub(channel);
  for (const char* key : {kAlphaKey, kBetaKey}) {
    pb::CreateNetworkRequest create;
    create.set_network_id(key == kAlphaKey ? "mine" : "theirs");
    *create.mutable_network()->mutable_spec() = testing::NeuronSpec();
    pb::CreateNetworkResponse created;
    ASSERT_TRUE(stub->CreateNetwork(As(key).get(), create, &created).ok());
    pb::TrainStepRequest step;
    step.set_name(absl::StrCat("networks/", create.network_id()));
    *step.mutable_batch() = testing::MakeBatch(1, 1, 1, 0);
    pb::TrainStepResponse stepped;
    ASSERT_TRUE(stub->TrainStep(As(key).get(), step, &stepped).ok());
  }
  httplib::Client web("127.0.0.1", f.port);
  auto none = web.Get("/api/networks");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  auto alpha = web.Get("/api/networks", Bearer(kAlphaKey));
  ASSERT_TRUE(alpha);
  EXPECT_EQ(alpha->status, 200);
  EXPECT_THAT(alpha->body, HasSubstr("\"networks/mine\""));
  EXPECT_THAT(alpha->body, ::testing::Not(HasSubstr("theirs")));
  EXPECT_THAT(alpha->body, ::testing::Not(HasSubstr("events_total")));
  auto admin = web.Get("/api/networks", Bearer(kAdminKey));
  ASSERT_TRUE(admin);
  EXPECT_THAT(admin->body, HasSubstr("networks/alpha.mine"));
  EXPECT_THAT(admin->body, HasSubstr("networks/beta.theirs"));
  // The page itself holds no data and is served.
  auto page = web.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  f.app->Shutdown();
}

TEST(HttpAccessTest, Off_404AndOpen_200WithoutKey) {
  HttpFixture f = StartApp(http::Access::kOff, http::Access::kOpen);
  ASSERT_NE(f.app, nullptr);
  httplib::Client web("127.0.0.1", f.port);
  auto metrics = web.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 404);
  auto dashboard = web.Get("/api/networks");
  ASSERT_TRUE(dashboard);
  EXPECT_EQ(dashboard->status, 200);
  HttpFixture g = StartApp(http::Access::kOpen, http::Access::kOff);
  ASSERT_NE(g.app, nullptr);
  httplib::Client web2("127.0.0.1", g.port);
  auto open_metrics = web2.Get("/metrics");
  ASSERT_TRUE(open_metrics);
  EXPECT_EQ(open_metrics->status, 200);
  auto page = web2.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 404);
  auto data = web2.Get("/api/networks");
  ASSERT_TRUE(data);
  EXPECT_EQ(data->status, 404);
}

}  // namespace
}  // namespace satlab
