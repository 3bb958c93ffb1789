// A server interceptor that answers an undecodable request message with
// INVALID_ARGUMENT instead of what gRPC 1.51's callback API does by itself:
//
//  - unary and server-streaming methods: when the request cannot be parsed
//    (malformed protobuf, or a string field that is not valid UTF-8), the
//    handler never runs and gRPC answers UNIMPLEMENTED with an empty
//    message, which reads as "no such method";
//  - the Train stream: a message that cannot be parsed ends the reactor's
//    read as if the client had half-closed, so the stream applies what it
//    already received and ends with OK although the client's later
//    minibatches were never read.
//
// Server::Create always installs it, ahead of ServerOptions.interceptors, so
// those (e.g. GrpcServerMetrics) see the rewritten status.
#ifndef SATLAB_SERVER_SERVICE_DECODE_INTERCEPTOR_H_
#define SATLAB_SERVER_SERVICE_DECODE_INTERCEPTOR_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"

namespace satlab::service {

// One interceptor per call. For a unary or server-streaming call whose
// request failed to decode, the status becomes INVALID_ARGUMENT naming the
// request type. For a Train stream, the status becomes INVALID_ARGUMENT
// naming the message's position and the minibatches applied before it, if
// (and only if) the stream would otherwise have ended with OK: an error the
// stream reported first (from an earlier message) is kept. Results already
// streamed reach the client either way.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewDecodeInterceptorFactory();

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_DECODE_INTERCEPTOR_H_
