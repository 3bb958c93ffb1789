// Calls with raw request bytes, bypassing the stub's serializer: what a
// broken or hostile client can put on the wire (garbage, strings that are
// not UTF-8). Each call is bounded by a deadline.
#ifndef SATLAB_TESTS_SERVICE_RAW_CALL_H_
#define SATLAB_TESTS_SERVICE_RAW_CALL_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace satlab::testing {

// "/satlab.v1.TrainingService/<method>".
inline std::string TrainingMethod(absl::string_view method) {
  return absl::StrCat("/satlab.v1.TrainingService/", method);
}

inline grpc::ByteBuffer ToByteBuffer(absl::string_view bytes) {
  grpc::Slice slice(bytes.data(), bytes.size());
  return grpc::ByteBuffer(&slice, 1);
}

inline std::string FromByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

// 0xff followed by `n` bytes from a fixed seed. Almost never a valid
// encoding of a message; IsUndecodable tells for sure.
inline std::string Garbage(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(1, '\xff');
  for (size_t i = 0; i < n; ++i) bytes.push_back(static_cast<char>(rng()));
  return bytes;
}

// Whether `bytes` fail to parse as `prototype`'s type.
inline bool IsUndecodable(const google::protobuf::Message& prototype,
                          const std::string& bytes) {
  std::unique_ptr<google::protobuf::Message> m(prototype.New());
  return !m->ParseFromString(bytes);
}

// A length-delimited field: tag (field << 3 | 2), length, bytes. Appended
// to a message's encoding it replaces a singular string field, whatever
// the bytes are (the protobuf serializer would refuse non-UTF-8 strings).
inline std::string StringField(int field, absl::string_view bytes) {
  std::string out;
  auto varint = [&out](uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  };
  varint(static_cast<uint64_t>(field) << 3 | 2);
  varint(bytes.size());
  out.append(bytes.data(), bytes.size());
  return out;
}

struct RawResult {
  grpc::Status status;
  // The response messages, serialized.
  std::vector<std::string> responses;
};

// Runs one call of `method` over `channel`: writes `requests` in order
// (stopping at the first write the server no longer takes), half-closes,
// reads every response, and returns the final status. Works for unary and
// streaming methods alike.
inline RawResult RawCall(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
    const std::vector<std::string>& requests,
    std::chrono::seconds timeout = std::chrono::seconds(20)) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::CompletionQueue cq;
  // Each operation is waited for before the next starts.
  auto wait = [&cq](intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    while (cq.Next(&tag, &ok)) {
      if (reinterpret_cast<intptr_t>(tag) == want) return ok;
    }
    return false;
  };
  RawResult result;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&ctx, method, &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  bool open = wait(1);
  for (const std::string& request : requests) {
    if (!open) break;
    call->Write(ToByteBuffer(request), reinterpret_cast<void*>(2));
    open = wait(2);
  }
  if (open) {
    call->WritesDone(reinterpret_cast<void*>(3));
    wait(3);
  }
  while (true) {
    grpc::ByteBuffer response;
    call->Read(&response, reinterpret_cast<void*>(4));
    if (!wait(4)) break;
    result.responses.push_back(FromByteBuffer(response));
  }
  call->Finish(&result.status, reinterpret_cast<void*>(5));
  wait(5);
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

}  // namespace satlab::testing

#endif  // SATLAB_TESTS_SERVICE_RAW_CALL_H_
