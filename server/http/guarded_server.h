// An httplib::Server whose connections a slow or hostile client cannot hold
// for long. cpp-httplib 0.11.4's own limits are per recv() (a client that
// sends one header line every few seconds keeps a connection, and one of a
// fixed pool of threads, forever) and it queues accepted sockets without
// bound. GuardedServer replaces the per-connection loop
// (process_and_close_socket) and the task queue:
//   - a total deadline for receiving each request (line, headers, body),
//     counted from the accept or from its first byte on a kept-alive
//     connection; past it the client gets 408 (if it sent anything) and
//     the connection is closed;
//   - a cap on the bytes of each request (431 for headers, 413 for a
//     declared body, answered before reading it) and of its target (414);
//   - every write must be taken by the kernel within the write timeout;
//   - keep-alive idle timeout and maximum requests per connection;
//   - at most max_connections connections, each on a thread of its own
//     (started on demand, kept until Shutdown). At the cap a new connection
//     takes the place of the one that has waited longest for a request
//     (idle kept-alive, or still trickling its headers: it is closed, with
//     503 if it had sent part of a request), so slow clients cannot lock
//     out quick ones however many they open. Only when every connection is
//     busy (a response being written, an event stream) does the newcomer
//     get 503 at once from the accepting thread; nothing is queued.
// Only http_server.cc includes this header (it pulls in <httplib.h>).
#ifndef SATLAB_SERVER_HTTP_GUARDED_SERVER_H_
#define SATLAB_SERVER_HTTP_GUARDED_SERVER_H_

#include <httplib.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/http/connection_counters.h"
#include "server/tls/http_tls.h"

namespace satlab::http {

// The fields of HttpServerOptions (http_server.h) of the same names.
struct ConnectionLimits {
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration write_timeout = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
  int max_requests_per_connection = 100;
  int max_connections = 256;
  int64_t max_request_bytes = 32 * 1024;
  int max_uri_bytes = 8192;
};

class GuardedServer final : public httplib::Server {
 public:
  explicit GuardedServer(const ConnectionLimits& limits);
  ~GuardedServer() override;

  // False if the stop eventfd could not be created.
  bool is_valid() const override;

  // Sets the listening socket's accept backlog (httplib binds with 5, too
  // few for a burst of connections: the excess waits for SYN retries).
  // Call after binding. False if listen() fails.
  bool RaiseBacklog(int backlog);

  // Wakes every connection blocked on its socket (they end at once), then
  // stops the listener (httplib::Server::stop); the listening thread joins
  // the connections' threads before listen_after_bind() returns.
  void Shutdown();

  HttpConnectionCounters Counters() const;

  // Serves TLS with `tls` (not owned, outlives the server): each connection
  // completes its handshake within the first request's deadline or is
  // closed. Call before listening.
  void set_tls(tls::ServerTlsContext* tls) { tls_ = tls; }

 private:
  class ConnectionStream;
  class ConnectionPool;
  friend class ConnectionPool;

  bool process_and_close_socket(socket_t sock) override;
  // Serves requests on the connection until it closes, a limit ends it or
  // the server stops; then closes its socket.
  void Serve(std::unique_ptr<ConnectionStream> stream);
  // The accepting thread's 503 to a connection it does not admit.
  void Reject(socket_t sock);
  // Answers 414 for a long target and 413 for a declared body over the
  // limit, before httplib reads the body; Unhandled otherwise.
  HandlerResponse Screen(const httplib::Request& req, httplib::Response& res);
  // The list of connections waiting for a request, oldest first.
  void EnterWaiting(ConnectionStream& stream) ABSL_LOCKS_EXCLUDED(waiting_mu_);
  void LeaveWaiting(ConnectionStream& stream) ABSL_LOCKS_EXCLUDED(waiting_mu_);
  // Closes the read side of the oldest waiting connection; false if none.
  bool EvictOldestWaiting() ABSL_LOCKS_EXCLUDED(waiting_mu_);
  std::string TimeoutMessage() const;
  std::string TooLargeMessage() const;

  // The connection this thread serves, for the error handler.
  static thread_local ConnectionStream* current_stream_;
  // Set while the accepting thread runs httplib's task for a new socket.
  static thread_local ConnectionPool* accepting_pool_;

  const ConnectionLimits limits_;
  tls::ServerTlsContext* tls_ = nullptr;
  // Written once by Shutdown(); every poll() of a connection watches it.
  int stop_fd_ = -1;
  const std::string busy_message_;
  const std::string rejected_response_;
  absl::Mutex waiting_mu_;
  std::list<ConnectionStream*> waiting_ ABSL_GUARDED_BY(waiting_mu_);
  std::unordered_map<const ConnectionStream*,
                     std::list<ConnectionStream*>::iterator>
      waiting_pos_ ABSL_GUARDED_BY(waiting_mu_);
  std::atomic<int64_t> open_{0};
  std::atomic<int64_t> accepted_total_{0};
  std::atomic<int64_t> rejected_total_{0};
  std::atomic<int64_t> request_timeouts_total_{0};
  std::atomic<int64_t> oversized_requests_total_{0};
  std::atomic<int64_t> write_timeouts_total_{0};
  std::atomic<int64_t> evicted_total_{0};
  std::atomic<int64_t> tls_handshake_failures_total_{0};
};

}  // namespace satlab::http

#endif  // SATLAB_SERVER_HTTP_GUARDED_SERVER_H_
