#include "server/service/reflection_service.h"

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "server/service/status.h"

namespace satlab::service {
namespace {

using grpc::reflection::v1alpha::ServerReflectionRequest;
using grpc::reflection::v1alpha::ServerReflectionResponse;

// Fills `response` with `file` and every file it imports, transitively,
// each once (the client needs them all to build the descriptors).
void AddFileAndDependencies(const google::protobuf::FileDescriptor* file,
                            ServerReflectionResponse* response) {
  absl::flat_hash_set<const google::protobuf::FileDescriptor*> seen;
  std::vector<const google::protobuf::FileDescriptor*> todo = {file};
  seen.insert(file);
  auto* out = response->mutable_file_descriptor_response();
  while (!todo.empty()) {
    const google::protobuf::FileDescriptor* f = todo.back();
    todo.pop_back();
    google::protobuf::FileDescriptorProto proto;
    f->CopyTo(&proto);
    proto.SerializeToString(out->add_file_descriptor_proto());
    for (int i = 0; i < f->dependency_count(); ++i) {
      if (seen.insert(f->dependency(i)).second)
        todo.push_back(f->dependency(i));
    }
  }
}

void SetError(ServerReflectionResponse* response, grpc::StatusCode code,
              std::string message) {
  auto* error = response->mutable_error_response();
  error->set_error_code(code);
  error->set_error_message(std::move(message));
}

class ReflectionReactor final
    : public grpc::ServerBidiReactor<ServerReflectionRequest,
                                     ServerReflectionResponse>,
      public StreamRegistry::Stream {
 public:
  ReflectionReactor(grpc::CallbackServerContext* ctx,
                    const ReflectionService* service, StreamRegistry* registry,
                    absl::Status admitted, Tenancy::Lease lease)
      : ctx_(ctx),
        service_(service),
        registry_(registry),
        lease_(std::move(lease)) {
    if (!admitted.ok()) {
      Finish(ToGrpcStatus(admitted));
      return;
    }
    if (absl::Status s = registry_->Register(this); !s.ok()) {
      Finish(ToGrpcStatus(s));
      return;
    }
    registered_ = true;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side (or the call was cancelled).
      Finish(grpc::Status::OK);
      return;
    }
    Touch();
    response_ = service_->Answer(request_);
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "reflection: the client did not take a response"));
      return;
    }
    Touch();
    StartRead(&request_);
  }

  void OnDone() override {
    if (registered_) registry_->Unregister(this);
    delete this;
  }

  // A client that asks nothing for the idle timeout is cancelled: the
  // pending read fails and OnReadDone finishes the call.
  void CheckIdle(absl::Time now, absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    if (!cancelled_ && now - last_activity_ >= timeout) {
      cancelled_ = true;
      ctx_->TryCancel();
    }
  }

 private:
  void Touch() {
    absl::MutexLock lock(&mu_);
    last_activity_ = absl::Now();
  }

  grpc::CallbackServerContext* const ctx_;
  const ReflectionService* const service_;
  StreamRegistry* const registry_;
  const Tenancy::Lease lease_;
  bool registered_ = false;
  ServerReflectionRequest request_;
  ServerReflectionResponse response_;
  absl::Mutex mu_;
  absl::Time last_activity_ ABSL_GUARDED_BY(mu_) = absl::Now();
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

ReflectionService::ReflectionService(std::vector<std::string> services,
                                     ReflectionAccess access, Tenancy* tenancy,
                                     StreamRegistry* streams)
    : services_(std::move(services)),
      access_(access),
      tenancy_(tenancy),
      streams_(streams) {}

grpc::ServerBidiReactor<ServerReflectionRequest, ServerReflectionResponse>*
ReflectionService::ServerReflectionInfo(grpc::CallbackServerContext* ctx) {
  absl::Status admitted;
  Tenancy::Lease lease;
  if (access_ == ReflectionAccess::kKey) {
    auto who = tenancy_->Admit(*ctx);
    if (!who.ok()) {
      admitted = who.status();
    } else if (auto stream = tenancy_->OpenStream(*who); !stream.ok()) {
      admitted = stream.status();
    } else {
      lease = *std::move(stream);
    }
  }
  return new ReflectionReactor(ctx, this, streams_, std::move(admitted),
                               std::move(lease));
}

ServerReflectionResponse ReflectionService::Answer(
    const ServerReflectionRequest& request) const {
  const google::protobuf::DescriptorPool* pool =
      google::protobuf::DescriptorPool::generated_pool();
  ServerReflectionResponse response;
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  switch (request.message_request_case()) {
    case ServerReflectionRequest::kListServices:
      for (const std::string& name : services_) {
        response.mutable_list_services_response()->add_service()->set_name(
            name);
      }
      break;
    case ServerReflectionRequest::kFileByFilename:
      if (const auto* file = pool->FindFileByName(request.file_by_filename());
          file != nullptr) {
        AddFileAndDependencies(file, &response);
      } else {
        SetError(&response, grpc::StatusCode::NOT_FOUND,
                 absl::StrCat("file_by_filename: no file \"",
                              request.file_by_filename(), "\""));
      }
      break;
    case ServerReflectionRequest::kFileContainingSymbol:
      if (const auto* file =
              pool->FindFileContainingSymbol(request.file_containing_symbol());
          file != nullptr) {
        AddFileAndDependencies(file, &response);
      } else {
        SetError(&response, grpc::StatusCode::NOT_FOUND,
                 absl::StrCat("file_containing_symbol: no symbol \"",
                              request.file_containing_symbol(), "\""));
      }
      break;
    case ServerReflectionRequest::kFileContainingExtension: {
      const auto& ext = request.file_containing_extension();
      const auto* type = pool->FindMessageTypeByName(ext.containing_type());
      const auto* field = type == nullptr ? nullptr
                                          : pool->FindExtensionByNumber(
                                                type, ext.extension_number());
      if (field != nullptr) {
        AddFileAndDependencies(field->file(), &response);
      } else {
        SetError(&response, grpc::StatusCode::NOT_FOUND,
                 absl::StrCat("file_containing_extension: no extension ",
                              ext.extension_number(), " of \"",
                              ext.containing_type(), "\""));
      }
      break;
    }
    case ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const std::string& name = request.all_extension_numbers_of_type();
      const auto* type = pool->FindMessageTypeByName(name);
      if (type == nullptr) {
        SetError(&response, grpc::StatusCode::NOT_FOUND,
                 absl::StrCat("all_extension_numbers_of_type: no type \"", name,
                              "\""));
        break;
      }
      std::vector<const google::protobuf::FieldDescriptor*> extensions;
      pool->FindAllExtensions(type, &extensions);
      auto* out = response.mutable_all_extension_numbers_response();
      out->set_base_type_name(name);
      for (const auto* e : extensions) out->add_extension_number(e->number());
      break;
    }
    case ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
      SetError(&response, grpc::StatusCode::INVALID_ARGUMENT,
               "message_request: expected one of list_services, "
               "file_by_filename, file_containing_symbol, "
               "file_containing_extension, all_extension_numbers_of_type, got "
               "none");
      break;
  }
  return response;
}

}  // namespace satlab::service
