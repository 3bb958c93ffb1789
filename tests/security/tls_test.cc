// Transport security of the gRPC port and the HTTP side port, in process:
// TLS and mutual TLS handshakes (good certificate, wrong CA, expired, none),
// plaintext refused by a TLS port and on non-loopback addresses unless
// chosen, certificate rotation without a restart (new connections see the
// new certificate, an open Train stream goes on), and the C++ client's
// credentials (TLS, mTLS, API key metadata on every call and stream).
// Certificates are made at run time by make_certs.sh (the openssl command).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_interceptor.h"
#include "gtest/gtest.h"
#include "server/app.h"
#include "server/service/server.h"
#include "server/tls/tls_files.h"

namespace satlab {
namespace {

namespace fs = std::filesystem;

// The certificates of this test binary, made once.
const std::string& CertDir() {
  static const std::string* dir = [] {
    char tmpl[] = "/tmp/satlab_tls_test.XXXXXX";
    const char* made = mkdtemp(tmpl);
    if (made == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    const std::string command =
        absl::StrCat("bash ", SATLAB_MAKE_CERTS, " ", made);
    if (std::system(command.c_str()) != 0) {
      std::fprintf(stderr, "cannot make certificates: %s\n", command.c_str());
      std::abort();
    }
    // Removed at exit: the keys are throwaway, but /tmp is shared.
    std::atexit([] { fs::remove_all(CertDir()); });
    return new std::string(made);
  }();
  return *dir;
}

std::string Cert(const std::string& name) {
  return absl::StrCat(CertDir(), "/", name);
}

// Replaces `to` at once (write aside, rename), as a deployment's
// certificate refresh (e.g. a Kubernetes Secret volume's symlink swap) does.
void ReplaceFile(const std::string& from, const std::string& to) {
  const std::string aside = to + ".new";
  fs::copy_file(from, aside, fs::copy_options::overwrite_existing);
  fs::rename(aside, to);
}

// Records every call's `authorization` metadata (test-only server
// interceptor: the key check itself belongs to the auth layer).
class Recorder {
 public:
  void Add(std::string method, std::string value) {
    absl::MutexLock lock(&mu_);
    seen_.emplace_back(std::move(method), std::move(value));
  }
  std::vector<std::pair<std::string, std::string>> Seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<std::string, std::string>> seen_ ABSL_GUARDED_BY(mu_);
};

class RecordingInterceptor : public grpc::experimental::Interceptor {
 public:
  RecordingInterceptor(Recorder* recorder, std::string method)
      : recorder_(recorder), method_(std::move(method)) {}
  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::
                POST_RECV_INITIAL_METADATA)) {
      for (const auto& [key, value] : *methods->GetRecvInitialMetadata()) {
        if (key == "authorization") {
          recorder_->Add(method_, std::string(value.data(), value.size()));
        }
      }
    }
    methods->Proceed();
  }

 private:
  Recorder* const recorder_;
  const std::string method_;
};

class RecordingFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RecordingFactory(Recorder* recorder) : recorder_(recorder) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RecordingInterceptor(recorder_, info->method());
  }

 private:
  Recorder* const recorder_;
};

v1::NetworkSpec Neuron() {
  v1::NetworkSpec spec;
  spec.set_input_size(1);
  auto* layer = spec.add_layers();
  layer->set_units(1);
  layer->set_activation(v1::ACTIVATION_SIGMOID);
  spec.set_loss(v1::LOSS_MSE);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.1);
  return spec;
}

v1::Minibatch Batch() {
  v1::Minibatch batch;
  *batch.mutable_inputs() = MakeTensor(1, 1, {1.0});
  *batch.mutable_targets() = MakeTensor(1, 1, {0.0});
  return batch;
}

class TlsServerTest : public ::testing::Test {
 protected:
  // Starts the server on 127.0.0.1:0 serving `cert`/`key` (copied to files
  // of its own so that tests can replace them), requiring client
  // certificates signed by `client_ca` when it is not empty.
  void StartServer(
      const std::string& cert, const std::string& key,
      const std::string& client_ca = "",
      const std::function<void(service::ServerOptions&)>& adjust = {}) {
    live_dir_ = absl::StrCat(
        CertDir(), "/live_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(live_dir_);
    ReplaceFile(Cert(cert), live_dir_ + "/tls.crt");
    ReplaceFile(Cert(key), live_dir_ + "/tls.key");
    service::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.compute_threads = 2;
    options.tls.cert_file = live_dir_ + "/tls.crt";
    options.tls.key_file = live_dir_ + "/tls.key";
    if (!client_ca.empty()) options.tls.client_ca_file = Cert(client_ca);
    options.tls.refresh_interval = absl::Seconds(1);
    Recorder* recorder = &recorder_;
    options.interceptors = [recorder] {
      std::vector<std::unique_ptr<
          grpc::experimental::ServerInterceptorFactoryInterface>>
          creators;
      creators.push_back(std::make_unique<RecordingFactory>(recorder));
      return creators;
    };
    if (adjust) adjust(options);
    auto server = service::Server::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(2));
  }

  ClientOptions Options(const std::string& ca = "ca.pem") const {
    ClientOptions options;
    options.target = server_->address();
    options.timeout = absl::Seconds(10);
    if (!ca.empty()) options.tls_ca_file = Cert(ca);
    return options;
  }

  // The common name of the certificate the server presents to a new
  // connection (a channel of its own: no shared subchannel), or the error.
  std::string PresentedName(const ClientOptions& options) const {
    auto credentials = ChannelCredentialsOf(options);
    if (!credentials.ok()) return credentials.status().ToString();
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel =
        grpc::CreateCustomChannel(options.target, *credentials, args);
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = health->Check(&ctx, request, &response);
    if (!status.ok()) return absl::StrCat("error: ", status.error_message());
    const auto names =
        ctx.auth_context()->FindPropertyValues("x509_common_name");
    return names.empty() ? "" : std::string(names[0].data(), names[0].size());
  }

  std::string live_dir_;
  Recorder recorder_;
  std::unique_ptr<service::Server> server_;
};

TEST_F(TlsServerTest, TlsCallWorksAndCarriesTheKeyOnCallsAndStreams) {
  StartServer("server.pem", "server.key");
  ClientOptions options = Options();
  options.api_key = "k-cpp";
  Client client(options);
  auto net = client.CreateNetwork(Neuron(), "tls");
  ASSERT_TRUE(net.ok()) << net.status();
  TrainOptions train;
  auto last = client.Train(net->name(), {Batch(), Batch()}, train,
                           [](const v1::TrainResponse&) {});
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->step(), 2);
  auto session = client.StartTraining(net->name(), train);
  ASSERT_TRUE(session.ok()) << session.status();
  std::map<std::string, int> keyed;
  for (const auto& [method, value] : recorder_.Seen()) {
    EXPECT_EQ(value, "Bearer k-cpp") << method;
    ++keyed[method];
  }
  EXPECT_GE(keyed["/satlab.v1.TrainingService/CreateNetwork"], 1);
  EXPECT_GE(keyed["/satlab.v1.TrainingService/Train"], 1);
  EXPECT_GE(keyed["/satlab.v1.TrainingService/GetNetwork"], 1);
  EXPECT_EQ(PresentedName(Options()), "satlab-server");
}

// The server ends every connection after 1 s (GOAWAY, then its calls are
// cut): the TrainSession reconnects and resumes, and every stream it opens
// carries the key.
TEST_F(TlsServerTest, TrainSessionReconnectsCarryTheKey) {
  StartServer("server.pem", "server.key", "",
              [](service::ServerOptions& options) {
                options.max_connection_age = absl::Seconds(1);
                options.max_connection_age_grace = absl::Milliseconds(200);
              });
  ClientOptions options = Options();
  options.api_key = "k-session";
  Client client(options);
  auto net = client.CreateNetwork(Neuron(), "session");
  ASSERT_TRUE(net.ok()) << net.status();
  auto session = client.StartTraining(net->name(), TrainOptions());
  ASSERT_TRUE(session.ok()) << session.status();
  v1::TrainResponse response;
  int64_t last_step = 0;
  const absl::Time start = absl::Now();
  int written = 0;
  while ((*session)->resumes() < 2 && absl::Now() - start < absl::Seconds(20)) {
    ASSERT_TRUE((*session)->Write(Batch()));
    ++written;
    absl::SleepFor(absl::Milliseconds(20));
  }
  (*session)->WritesDone();
  while ((*session)->Read(&response)) last_step = response.result().step();
  ASSERT_TRUE((*session)->Finish().ok());
  EXPECT_GE((*session)->resumes(), 2);
  EXPECT_EQ(last_step, written);
  int train_calls = 0;
  for (const auto& [method, value] : recorder_.Seen()) {
    EXPECT_EQ(value, "Bearer k-session") << method;
    if (method == "/satlab.v1.TrainingService/Train") ++train_calls;
  }
  EXPECT_GE(train_calls, 3);
}

TEST_F(TlsServerTest, PlaintextClientIsRefusedAndNoCallArrives) {
  StartServer("server.pem", "server.key");
  ClientOptions options = Options("");
  options.api_key = "k-plain";
  ASSERT_FALSE(options.UsesTls());
  Client client(options);
  const absl::Status status = client.ListNetworks(10).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_TRUE(recorder_.Seen().empty());
}

TEST_F(TlsServerTest, ClientRefusesServerOfAnotherCaOrName) {
  StartServer("server.pem", "server.key");
  {
    Client client(Options("other_ca.pem"));
    EXPECT_EQ(client.ListNetworks(10).status().code(),
              absl::StatusCode::kUnavailable);
  }
  ClientOptions wrong_name = Options();
  wrong_name.tls_server_name = "not-satlab.example";
  EXPECT_EQ(Client(wrong_name).ListNetworks(10).status().code(),
            absl::StatusCode::kUnavailable);
  ClientOptions right_name = Options();
  right_name.tls_server_name = "localhost";
  EXPECT_TRUE(Client(right_name).ListNetworks(10).ok());
  EXPECT_TRUE(recorder_.Seen().empty());
}

TEST_F(TlsServerTest, MutualTlsRequiresAClientCertificateOfTheCa) {
  StartServer("server.pem", "server.key", "ca.pem");
  struct Case {
    std::string cert, key;
    bool ok;
  };
  const Case cases[] = {{"client.pem", "client.key", true},
                        {"", "", false},
                        {"other_client.pem", "other_client.key", false},
                        {"expired.pem", "expired.key", false}};
  for (const Case& c : cases) {
    ClientOptions options = Options();
    if (!c.cert.empty()) {
      options.tls_cert_file = Cert(c.cert);
      options.tls_key_file = Cert(c.key);
    }
    const absl::Status status = Client(options).ListNetworks(10).status();
    if (c.ok) {
      EXPECT_TRUE(status.ok()) << c.cert << ": " << status;
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable)
          << (c.cert.empty() ? "no certificate" : c.cert) << ": " << status;
    }
  }
}

TEST_F(TlsServerTest, RotationReachesNewConnectionsWithoutDroppingAStream) {
  StartServer("server.pem", "server.key");
  Client client(Options());
  auto net = client.CreateNetwork(Neuron(), "rotate");
  ASSERT_TRUE(net.ok()) << net.status();
  auto stream = client.OpenTrainStream(net->name(), TrainOptions());
  ASSERT_TRUE(stream.ok()) << stream.status();
  v1::TrainResponse response;
  ASSERT_TRUE((*stream)->Write(Batch()));
  ASSERT_TRUE((*stream)->Read(&response));
  ASSERT_EQ(PresentedName(Options()), "satlab-server");

  ReplaceFile(Cert("server2.key"), live_dir_ + "/tls.key");
  ReplaceFile(Cert("server2.pem"), live_dir_ + "/tls.crt");
  const absl::Time start = absl::Now();
  std::string name;
  while (absl::Now() - start < absl::Seconds(15)) {
    name = PresentedName(Options());
    if (name == "satlab-server-rotated") break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(name, "satlab-server-rotated");
  std::printf("rotation seen by a new connection after %.1f s\n",
              absl::ToDoubleSeconds(absl::Now() - start));

  // The stream opened before the rotation goes on and ends cleanly.
  ASSERT_TRUE((*stream)->Write(Batch()));
  ASSERT_TRUE((*stream)->Read(&response));
  EXPECT_EQ(response.result().step(), 2);
  ASSERT_TRUE((*stream)->WritesDone());
  while ((*stream)->Read(&response)) {
  }
  EXPECT_TRUE((*stream)->Finish().ok());
  EXPECT_TRUE(client.GetNetwork(net->name()).ok());
}

// A rotation caught half-way (the new key next to the old certificate).
// gRPC 1.51's file watcher alone would load the mismatched pair and fail
// every new handshake until the certificate follows; the server hands it
// only checked pairs (tls::StagedIdentity), so the old pair keeps serving.
TEST_F(TlsServerTest, HalfRotatedPairKeepsTheOldPairServing) {
  StartServer("server.pem", "server.key");
  Client open(Options());
  ASSERT_TRUE(open.ListNetworks(10).ok());
  ASSERT_EQ(PresentedName(Options()), "satlab-server");
  ReplaceFile(Cert("server2.key"), live_dir_ + "/tls.key");
  // Three refresh intervals: the watcher has read the mismatched pair.
  absl::SleepFor(absl::Seconds(3));
  EXPECT_EQ(PresentedName(Options()), "satlab-server");
  EXPECT_TRUE(open.ListNetworks(10).ok());
  ReplaceFile(Cert("server2.pem"), live_dir_ + "/tls.crt");
  const absl::Time start = absl::Now();
  std::string name;
  while (absl::Now() - start < absl::Seconds(15)) {
    name = PresentedName(Options());
    if (name == "satlab-server-rotated") break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(name, "satlab-server-rotated");
  EXPECT_TRUE(open.ListNetworks(10).ok());
}

// A client whose TLS files cannot be read reports it, and its calls fail
// instead of falling back to plaintext (even against a plaintext server).
TEST(ClientCredentialsTest, UnreadableFilesNeverFallBackToPlaintext) {
  service::ServerOptions server_options;
  server_options.listen_address = "127.0.0.1:0";
  server_options.compute_threads = 1;
  auto plaintext = service::Server::Create(server_options);
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();
  ClientOptions options;
  options.target = (*plaintext)->address();
  options.timeout = absl::Seconds(5);
  options.tls_ca_file = Cert("missing-ca.pem");
  const auto credentials = ChannelCredentialsOf(options);
  ASSERT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(credentials.status().message(), "tls_ca_file"));
  EXPECT_EQ(Client(options).ListNetworks(10).status().code(),
            absl::StatusCode::kUnavailable);
  options.tls_ca_file.clear();
  options.tls_cert_file = Cert("client.pem");
  EXPECT_EQ(ChannelCredentialsOf(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Client(options).ListNetworks(10).status().code(),
            absl::StatusCode::kUnavailable);
  (*plaintext)->Shutdown(absl::Seconds(1));
}

TEST(TransportPolicyTest, PlaintextOnlyOnLoopbackUnlessChosen) {
  EXPECT_TRUE(tls::IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(tls::IsLoopbackHost("localhost"));
  EXPECT_TRUE(tls::IsLoopbackHost("::1"));
  EXPECT_FALSE(tls::IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(tls::IsLoopbackHost("::"));
  EXPECT_FALSE(tls::IsLoopbackHost("10.0.0.7"));
  EXPECT_EQ(tls::HostOf("[::1]:50051"), "::1");
  EXPECT_EQ(tls::HostOf("0.0.0.0:50051"), "0.0.0.0");

  service::ServerOptions options;
  options.listen_address = "0.0.0.0:0";
  auto refused = service::Server::Create(options);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "--plaintext"))
      << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "--tls_cert_file"))
      << refused.status();
  options.listen_address = "[::]:0";
  EXPECT_EQ(service::Server::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);

  options.listen_address = "0.0.0.0:0";
  options.plaintext = true;
  auto chosen = service::Server::Create(options);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  (*chosen)->Shutdown(absl::Seconds(1));

  // TLS on a non-loopback address needs no --plaintext.
  options.plaintext = false;
  options.tls.cert_file = Cert("server.pem");
  options.tls.key_file = Cert("server.key");
  auto tls = service::Server::Create(options);
  ASSERT_TRUE(tls.ok()) << tls.status();
  (*tls)->Shutdown(absl::Seconds(1));
}

TEST(TransportPolicyTest, InconsistentOrBadFilesAreRefusedAtStart) {
  service::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  auto expect_refused = [&](const std::string& fragment) {
    auto server = service::Server::Create(options);
    ASSERT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
        << fragment;
    EXPECT_TRUE(absl::StrContains(server.status().message(), fragment))
        << server.status();
  };
  options.tls.cert_file = Cert("server.pem");
  expect_refused("expected both");
  options.tls.key_file = Cert("server2.key");
  expect_refused("does not belong to the certificate");
  options.tls.key_file = Cert("server.pem");
  expect_refused("expected a PEM private key");
  options.tls.key_file = Cert("server.key");
  options.plaintext = true;
  expect_refused("--plaintext");
  options.plaintext = false;
  options.tls.client_ca_file = Cert("missing.pem");
  expect_refused("client_ca_file: cannot open");
  options.tls = {};
  options.tls.client_ca_file = Cert("ca.pem");
  expect_refused("mutual TLS is TLS");
}

// ---- the HTTP side port ----------------------------------------------------

struct HttpsResult {
  bool handshake = false;
  std::string peer_name;  // common name of the server's certificate
  std::string response;
};

// GET `path` over TLS from 127.0.0.1:`port`, trusting `ca`, presenting
// `cert`/`key` when set.
HttpsResult HttpsGet(int port, const std::string& path, const std::string& ca,
                     const std::string& cert = "",
                     const std::string& key = "") {
  HttpsResult result;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(
      SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!cert.empty()) {
    SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str());
    SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM);
  }
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout = {5, 0};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(sock);
    return result;
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), sock);
  SSL_set_tlsext_host_name(ssl.get(), "localhost");
  SSL_set1_host(ssl.get(), "localhost");
  if (SSL_connect(ssl.get()) == 1) {
    result.handshake = true;
    X509* peer = SSL_get1_peer_certificate(ssl.get());
    char name[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, name,
                              sizeof(name));
    X509_free(peer);
    result.peer_name = name;
    const std::string request = absl::StrCat(
        "GET ", path,
        " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    SSL_write(ssl.get(), request.data(), static_cast<int>(request.size()));
    char buffer[4096];
    int n;
    while ((n = SSL_read(ssl.get(), buffer, sizeof(buffer))) > 0) {
      result.response.append(buffer, static_cast<size_t>(n));
    }
  }
  ERR_clear_error();
  close(sock);
  return result;
}

// The bytes a plaintext HTTP client gets back from `port`.
std::string PlainGet(int port, const std::string& path) {
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout = {5, 0};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  std::string response;
  if (connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n\r\n");
    send(sock, request.data(), request.size(), MSG_NOSIGNAL);
    char buffer[4096];
    ssize_t n;
    while ((n = recv(sock, buffer, sizeof(buffer), 0)) > 0) {
      response.append(buffer, static_cast<size_t>(n));
    }
  }
  close(sock);
  return response;
}

class HttpTlsTest : public ::testing::Test {
 protected:
  void Start(const std::string& client_ca = "",
             absl::Duration request_timeout = absl::Seconds(10)) {
    dir_ = absl::StrCat(
        CertDir(), "/http_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    ReplaceFile(Cert("server.pem"), dir_ + "/tls.crt");
    ReplaceFile(Cert("server.key"), dir_ + "/tls.key");
    server::AppOptions options;
    options.server.listen_address = "127.0.0.1:0";
    options.server.compute_threads = 1;
    options.server.tls.cert_file = dir_ + "/tls.crt";
    options.server.tls.key_file = dir_ + "/tls.key";
    http::HttpServerOptions& http = options.http.emplace();
    http.port = 0;
    http.request_timeout = request_timeout;
    http.tls = options.server.tls;
    // Long enough that only an explicit reload (SIGHUP) picks up a change.
    http.tls.refresh_interval = absl::Hours(1);
    if (!client_ca.empty()) http.tls.client_ca_file = Cert(client_ca);
    auto app = server::App::Start(options);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = *std::move(app);
  }

  std::string dir_;
  std::unique_ptr<server::App> app_;
};

TEST_F(HttpTlsTest, MetricsOverTlsAndPlaintextRefused) {
  Start();
  const HttpsResult ok =
      HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem"));
  ASSERT_TRUE(ok.handshake);
  EXPECT_EQ(ok.peer_name, "satlab-server");
  EXPECT_TRUE(absl::StartsWith(ok.response, "HTTP/1.1 200")) << ok.response;
  EXPECT_TRUE(absl::StrContains(ok.response, "satlab_http_connections"));

  // A plaintext request gets no HTTP answer, and is counted.
  EXPECT_FALSE(
      absl::StrContains(PlainGet(app_->http_port(), "/metrics"), "HTTP/1.1"));
  const HttpsResult after =
      HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem"));
  EXPECT_TRUE(absl::StrContains(after.response,
                                "satlab_http_tls_handshake_failures_total 1"))
      << after.response;
  // A client trusting another CA does not complete the handshake.
  EXPECT_FALSE(
      HttpsGet(app_->http_port(), "/metrics", Cert("other_ca.pem")).handshake);
}

TEST_F(HttpTlsTest, MutualTlsOnTheHttpPort) {
  Start("ca.pem");
  EXPECT_TRUE(
      absl::StartsWith(HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem"),
                                Cert("client.pem"), Cert("client.key"))
                           .response,
                       "HTTP/1.1 200"));
  // TLS 1.3 finishes the client's side of the handshake before the server
  // checks its certificate: what shows is that no response comes.
  EXPECT_TRUE(
      HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem")).response.empty());
  EXPECT_TRUE(HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem"),
                       Cert("other_client.pem"), Cert("other_client.key"))
                  .response.empty());
  EXPECT_TRUE(HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem"),
                       Cert("expired.pem"), Cert("expired.key"))
                  .response.empty());
}

TEST_F(HttpTlsTest, ReloadServesTheNewCertificateAndKeepsABadOneOut) {
  Start();
  // A half-written rotation (new key, old certificate) does not load: the
  // old pair keeps serving.
  ReplaceFile(Cert("server2.key"), dir_ + "/tls.key");
  EXPECT_FALSE(app_->ReloadTls().ok());
  EXPECT_EQ(HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem")).peer_name,
            "satlab-server");
  ReplaceFile(Cert("server2.pem"), dir_ + "/tls.crt");
  ASSERT_TRUE(app_->ReloadTls().ok());
  const HttpsResult rotated =
      HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem"));
  EXPECT_EQ(rotated.peer_name, "satlab-server-rotated");
  EXPECT_TRUE(absl::StartsWith(rotated.response, "HTTP/1.1 200"));
}

// Slowloris against the handshake: a connection that never completes it is
// closed at the request deadline, like one that never sends a request.
TEST_F(HttpTlsTest, SilentConnectionClosedAtTheRequestDeadline) {
  Start("", absl::Seconds(1));
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(app_->http_port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout = {10, 0};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ASSERT_EQ(connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // Half a ClientHello record header, then silence.
  ASSERT_EQ(send(sock, "\x16\x03\x01", 3, MSG_NOSIGNAL), 3);
  const absl::Time start = absl::Now();
  char byte;
  EXPECT_LE(recv(sock, &byte, 1, 0), 0);
  const absl::Duration held = absl::Now() - start;
  close(sock);
  EXPECT_GE(held, absl::Milliseconds(800));
  EXPECT_LE(held, absl::Seconds(5));
  const HttpsResult after =
      HttpsGet(app_->http_port(), "/metrics", Cert("ca.pem"));
  EXPECT_TRUE(absl::StrContains(after.response,
                                "satlab_http_tls_handshake_failures_total 1"))
      << after.response;
}

TEST(HttpPolicyTest, PlaintextHttpOnNonLoopbackRefusedUnlessChosen) {
  server::AppOptions options;
  options.server.listen_address = "127.0.0.1:0";
  options.server.compute_threads = 1;
  http::HttpServerOptions& http = options.http.emplace();
  http.host = "0.0.0.0";
  http.port = 0;
  auto refused = server::App::Start(options);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "http"))
      << refused.status();
  http.plaintext = true;
  auto chosen = server::App::Start(options);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
}

}  // namespace
}  // namespace satlab
