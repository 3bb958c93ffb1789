#include "server/service/decode_interceptor.h"

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"
#include "satlab/v1/training_service.grpc.pb.h"

namespace satlab::service {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;
using grpc::experimental::ServerRpcInfo;

constexpr absl::string_view kWhy =
    "malformed protobuf, or a string field that is not valid UTF-8";

// The request type of "/package.Service/Method" as the generated descriptor
// pool knows it, e.g. "satlab.v1.GetNetworkRequest"; a generic description
// for methods outside the pool (the health service parses its own bytes).
std::string RequestTypeName(absl::string_view full_method) {
  absl::ConsumePrefix(&full_method, "/");
  const size_t slash = full_method.rfind('/');
  if (slash != absl::string_view::npos) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            std::string(full_method.substr(0, slash)));
    const google::protobuf::MethodDescriptor* method =
        service == nullptr ? nullptr
                           : service->FindMethodByName(
                                 std::string(full_method.substr(slash + 1)));
    if (method != nullptr) return method->input_type()->full_name();
  }
  return "the method's request type";
}

// Whether a Train read that came back without a message failed to parse or
// received nothing (the client half-closed, or the call ended). gRPC parses
// into the reactor's message with ParseFromZeroCopyStream, which clears the
// message (unknown fields included) before parsing; when nothing arrives it
// does not touch the message. So a mark put into the message before the read
// survives exactly when no parse was attempted. The mark is an unknown
// varint field with the largest legal field number, which no satlab message
// uses; it is removed again before the reactor sees the message.
constexpr int kMarkField = (1 << 29) - 1;
constexpr uint64_t kMarkValue = 0x5a71abdec0de;

void Mark(v1::TrainRequest* message) {
  message->GetReflection()->MutableUnknownFields(message)->AddVarint(
      kMarkField, kMarkValue);
}

// True when the mark was still there (and removes it): nothing was parsed.
bool TakeMark(v1::TrainRequest* message) {
  google::protobuf::UnknownFieldSet* fields =
      message->GetReflection()->MutableUnknownFields(message);
  bool marked = false;
  for (int i = 0; i < fields->field_count(); ++i) {
    const google::protobuf::UnknownField& field = fields->field(i);
    marked = marked ||
             (field.number() == kMarkField &&
              field.type() == google::protobuf::UnknownField::TYPE_VARINT &&
              field.varint() == kMarkValue);
  }
  if (marked) fields->DeleteByNumber(kMarkField);
  return marked;
}

const std::string& TrainMethod() {
  static const std::string* name = new std::string(
      absl::StrCat("/", v1::TrainingService::service_full_name(), "/Train"));
  return *name;
}

class DecodeInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit DecodeInterceptor(ServerRpcInfo* info)
      : method_(info->method()),
        // The handler of a unary or server-streaming method gets its one
        // request already parsed; for those a missing request message means
        // the parse failed.
        single_request_(info->type() == ServerRpcInfo::Type::UNARY ||
                        info->type() == ServerRpcInfo::Type::SERVER_STREAMING),
        train_(TrainMethod() == method_) {}

  void Intercept(InterceptorBatchMethods* methods) override {
    // The server-side cancel notification (ServerContext::TryCancel) carries
    // no batch: asking it for a message or status aborts the process.
    if (!methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_CANCEL)) {
      if (methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::POST_RECV_MESSAGE)) {
        Received(methods->GetRecvMessage());
      } else if (train_ && methods->GetRecvMessage() != nullptr) {
        // gRPC runs server interceptors on every batch; a batch without hook
        // points that has a message to receive into is a read about to
        // start.
        StartRead(static_cast<v1::TrainRequest*>(methods->GetRecvMessage()));
      }
      if (methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::PRE_SEND_STATUS)) {
        MaybeRewriteStatus(methods);
      }
    }
    methods->Proceed();
  }

 private:
  void StartRead(v1::TrainRequest* message) {
    absl::MutexLock lock(&mu_);
    Mark(message);
    reading_ = message;
  }

  void Received(void* message) {
    absl::MutexLock lock(&mu_);
    v1::TrainRequest* const read = reading_;
    reading_ = nullptr;
    if (message != nullptr) {
      ++decoded_messages_;
      if (train_ && static_cast<v1::TrainRequest*>(message)->has_batch()) {
        ++decoded_batches_;
      }
      return;
    }
    if (undecodable_) return;
    if (single_request_) {
      undecodable_ = true;
    } else if (read != nullptr) {
      undecodable_ = !TakeMark(read);
    }
  }

  void MaybeRewriteStatus(InterceptorBatchMethods* methods) {
    absl::MutexLock lock(&mu_);
    if (!undecodable_) return;
    if (single_request_) {
      // The handler never ran: the status is gRPC's UNIMPLEMENTED stand-in.
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("the request message could not be decoded as ",
                       RequestTypeName(method_), " (", kWhy, ")")));
      return;
    }
    // A stream that failed on an earlier message keeps that error.
    if (!methods->GetSendStatus().ok()) return;
    methods->ModifySendStatus(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("request message ", decoded_messages_ + 1,
                     " of this stream could not be decoded as ",
                     RequestTypeName(method_), " (", kWhy,
                     "); the stream stopped reading there: the ",
                     decoded_batches_,
                     " minibatches before it were applied (batches_applied ",
                     decoded_batches_, ") and nothing after it was read")));
  }

  const char* const method_;  // owned by the server's method table
  const bool single_request_;
  const bool train_;
  absl::Mutex mu_;
  // The Train read in flight (the reactor's message), marked.
  v1::TrainRequest* reading_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t decoded_messages_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t decoded_batches_ ABSL_GUARDED_BY(mu_) = 0;
  bool undecodable_ ABSL_GUARDED_BY(mu_) = false;
};

class DecodeInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      ServerRpcInfo* info) override {
    // Unregistered methods (UNIMPLEMENTED) arrive with no method name.
    if (info->method() == nullptr) return nullptr;
    return new DecodeInterceptor(info);
  }
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewDecodeInterceptorFactory() {
  return std::make_unique<DecodeInterceptorFactory>();
}

}  // namespace satlab::service
