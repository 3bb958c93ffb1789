// Identity from a client certificate (Tenancy::Admit under mutual TLS),
// against a TLS server of the test's own: throwaway certificates made with
// the openssl command at run time; a generic service answers each call
// with the identity Admit found (ABORTED "tenant=... admin=...") or its
// refusal.
#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/auth/api_keys.h"
#include "server/service/tenancy.h"

namespace satlab {
namespace {

using ::testing::HasSubstr;

constexpr char kKey[] = "alpha-key-0123456789abcdef0123456789";

std::string Read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

class Probe final : public grpc::CallbackGenericService {
 public:
  explicit Probe(service::Tenancy* tenancy) : tenancy_(tenancy) {}
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override {
    class Answer final : public grpc::ServerGenericBidiReactor {
     public:
      explicit Answer(const grpc::Status& status) { Finish(status); }
      void OnDone() override { delete this; }
    };
    auto who = tenancy_->Admit(*ctx);
    if (!who.ok()) {
      return new Answer(
          grpc::Status(static_cast<grpc::StatusCode>(who.status().code()),
                       std::string(who.status().message())));
    }
    return new Answer(
        grpc::Status(grpc::StatusCode::ABORTED,
                     absl::StrCat("tenant=", who->tenant,
                                  " admin=", who->role == core::Role::kAdmin)));
  }

 private:
  service::Tenancy* const tenancy_;
};

class MtlsIdentityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A directory of this process's own: ctest runs each test of this
    // suite in its own process, several at once.
    std::string tmpl = ::testing::TempDir() + "/mtls_identity.XXXXXX";
    const char* made = mkdtemp(tmpl.data());
    ASSERT_NE(made, nullptr) << "mkdtemp " << tmpl;
    dir_ = new std::string(made);
    const std::string d = *dir_;
    std::ofstream(d + "/san.ext") << "subjectAltName=IP:127.0.0.1\n";
    const std::string script = absl::StrCat(
        "(cd ", d, " && ",
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
        "-days 1 -subj /CN=test-ca && ",
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out "
        "server.csr -subj /CN=127.0.0.1 && ",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
        "-CAcreateserial -out server.pem -days 1 -extfile san.ext && ",
        "for c in robot-1 stranger; do "
        "openssl req -newkey rsa:2048 -nodes -keyout $c.key -out $c.csr "
        "-subj /CN=$c && "
        "openssl x509 -req -in $c.csr -CA ca.pem -CAkey ca.key "
        "-CAcreateserial -out $c.pem -days 1 || exit 1; done",
        ") >/dev/null 2>&1");
    certs_made_ = std::system(script.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    if (dir_ == nullptr) return;
    std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    // A test that needs a real program fails loudly without it (a failure
    // in SetUpTestSuite alone would only mark the tests skipped).
    ASSERT_NE(dir_, nullptr) << "no temporary directory";
    ASSERT_TRUE(certs_made_)
        << "openssl could not make the test certificates in " << *dir_;
    service::AuthOptions auth;
    auto entry = auth::HashKey(kKey, {"beta", core::Role::kUser});
    ASSERT_TRUE(entry.ok());
    auth.keys.Add(*entry);
    auth.cert_identities = {{"robot-1", {"alpha", core::Role::kUser}},
                            {"ops-robot", {"ops", core::Role::kAdmin}}};
    tenancy_ = std::make_unique<service::Tenancy>(auth, nullptr);
    probe_ = std::make_unique<Probe>(tenancy_.get());
    grpc::SslServerCredentialsOptions ssl(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = Read(*dir_ + "/ca.pem");
    ssl.pem_key_cert_pairs.push_back(
        {Read(*dir_ + "/server.key"), Read(*dir_ + "/server.pem")});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl),
                             &port_);
    builder.RegisterCallbackGenericService(probe_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // One call with client certificate `cert` (and `key` as a bearer key if
  // non-empty): the status Probe answered.
  grpc::Status CallAs(const std::string& cert, const std::string& key) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = Read(*dir_ + "/ca.pem");
    ssl.pem_private_key = Read(*dir_ + "/" + cert + ".key");
    ssl.pem_cert_chain = Read(*dir_ + "/" + cert + ".pem");
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                       grpc::SslCredentials(ssl));
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
    grpc::CompletionQueue cq;
    auto call = stub.PrepareCall(&ctx, "/probe.Probe/Who", &cq);
    void* tag = nullptr;
    bool ok = false;
    call->StartCall(reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(2));
    while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(2)) {
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  }

  static std::string* dir_;
  static bool certs_made_;
  std::unique_ptr<service::Tenancy> tenancy_;
  std::unique_ptr<Probe> probe_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

std::string* MtlsIdentityTest::dir_ = nullptr;
bool MtlsIdentityTest::certs_made_ = false;

TEST_F(MtlsIdentityTest, MappedCertificate_IsItsTenant) {
  grpc::Status s = CallAs("robot-1", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED) << s.error_message();
  EXPECT_EQ(s.error_message(), "tenant=alpha admin=0");
}

TEST_F(MtlsIdentityTest, UnmappedCertificate_Unauthenticated) {
  grpc::Status s = CallAs("stranger", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("missing credentials"));
}

TEST_F(MtlsIdentityTest, BearerKeyWinsOverCertificate) {
  // A valid key is its own tenant, whatever the certificate says ...
  grpc::Status s = CallAs("robot-1", kKey);
  EXPECT_EQ(s.error_message(), "tenant=beta admin=0");
  // ... and a wrong key is refused, not retried as the certificate.
  grpc::Status wrong = CallAs("robot-1", "wrong-key-0123456789abcdef0123");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace satlab
