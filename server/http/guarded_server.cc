#include "server/http/guarded_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace satlab::http {
namespace {

using Clock = std::chrono::steady_clock;

// A connection thread idle this long ends (a burst of connections leaves
// no crowd of idle threads behind).
constexpr absl::Duration kIdleThreadLifetime = absl::Seconds(30);

constexpr char kMalformedMessage[] =
    "http: malformed request line or headers (a header line has at most "
    "8192 bytes)\n";

Clock::duration ToClock(absl::Duration d) {
  return std::chrono::duration_cast<Clock::duration>(
      absl::ToChronoNanoseconds(d));
}

std::string CannedResponse(absl::string_view status, absl::string_view body) {
  return absl::StrCat("HTTP/1.1 ", status,
                      "\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: ",
                      body.size(), "\r\nConnection: close\r\n\r\n", body);
}

void PeerAddress(bool local, socket_t sock, std::string& ip, int& port) {
  sockaddr_storage addr = {};
  socklen_t len = sizeof(addr);
  const int rc =
      local ? getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len)
            : getpeername(sock, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) return;
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof(host),
                  service, sizeof(service),
                  NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(service);
  }
}

}  // namespace

// The socket of one connection as httplib reads and writes it. Reads are
// buffered (httplib reads a request byte by byte) and bounded by the
// current request's deadline and byte budget; every write must be taken by
// the kernel within the write timeout. Every wait also watches the server's
// stop eventfd. Under TLS the same reads and writes go through the
// connection's SSL session (on the socket made non-blocking), waiting for
// whichever direction OpenSSL asks for.
class GuardedServer::ConnectionStream final : public httplib::Stream {
 public:
  enum class Failure { kNone, kRequestTimeout, kRequestTooLarge, kClosed };

  // `first_deadline`: when the first request must have arrived.
  ConnectionStream(socket_t sock, int stop_fd, const ConnectionLimits& limits,
                   Clock::time_point first_deadline)
      : sock_(sock),
        stop_fd_(stop_fd),
        limits_(limits),
        request_deadline_(first_deadline) {}

  // Waits until a request's first byte is here (already buffered, or on the
  // socket) or `deadline` passes. False on timeout or stop.
  bool WaitForRequest(Clock::time_point deadline) const {
    return begin_ != end_ || TlsPending() || Wait(POLLIN, deadline) > 0;
  }

  // Whether the next request's line and headers have all arrived (a client
  // pipelining its requests), looking only at what is buffered and what
  // the socket already holds, without waiting: such a connection is busy,
  // not waiting for a request. A partial request is moved to the front of
  // the buffer to make room. An end of stream or error is left for read()
  // to find again.
  bool NextRequestReceived() {
    if (HeadersComplete()) return true;
    if (begin_ > 0) {
      std::memmove(buffer_, buffer_ + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    while (end_ < sizeof(buffer_)) {
      short events = 0;
      const ssize_t n =
          ReadSome(buffer_ + end_, sizeof(buffer_) - end_, &events);
      if (n <= 0) return false;
      end_ += static_cast<size_t>(n);
      if (HeadersComplete()) return true;
    }
    return false;
  }

  // Takes `ssl` (null: OpenSSL could not allocate) and completes the TLS
  // handshake by the first request's deadline. False when it fails, times
  // out or the server stops.
  bool StartTls(SSL* ssl) {
    if (ssl == nullptr) return false;
    ssl_.reset(ssl);
    const int flags = fcntl(sock_, F_GETFL);
    if (flags < 0 || fcntl(sock_, F_SETFL, flags | O_NONBLOCK) != 0) {
      return false;
    }
    SSL_set_fd(ssl, sock_);
    for (;;) {
      ERR_clear_error();
      const int rc = SSL_accept(ssl);
      if (rc == 1) return true;
      const short events = WantedEvents(rc);
      if (events == 0 || Wait(events, request_deadline_) <= 0) {
        ERR_clear_error();
        return false;
      }
    }
  }

  // Sends TLS close_notify if the session is up (once, without waiting).
  void EndTls() {
    if (ssl_ == nullptr) return;
    ERR_clear_error();
    SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }

  // Starts a request: it has until `deadline` and max_request_bytes.
  void BeginRequest(Clock::time_point deadline) {
    request_deadline_ = deadline;
    request_bytes_ = 0;
    wrote_ = false;
    routed_ = false;
  }

  Failure failure() const { return failure_; }
  Clock::time_point request_deadline() const { return request_deadline_; }
  // Set (from the accepting thread) when the connection was closed to make
  // room for a new one.
  void MarkEvicted() { evicted_.store(true, std::memory_order_relaxed); }
  bool evicted() const { return evicted_.load(std::memory_order_relaxed); }
  // Ends the connection after the current response (one whose request
  // cannot be followed by another: its body was never read).
  void CloseAfterResponse() { close_after_response_ = true; }
  bool close_after_response() const { return close_after_response_; }
  // Set once the current request's line and headers were parsed.
  void MarkRouted() { routed_ = true; }
  bool routed() const { return routed_; }
  // Whether anything was written since BeginRequest.
  bool wrote() const { return wrote_; }
  bool write_timed_out() const { return write_timed_out_; }

  bool is_readable() const override {
    return begin_ != end_ || TlsPending() ||
           Wait(POLLIN, request_deadline_) > 0;
  }

  bool is_writable() const override {
    return !write_failed_ &&
           Wait(POLLOUT, Clock::now() + ToClock(limits_.write_timeout)) > 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (failure_ != Failure::kNone) return -1;
    short events = POLLIN;
    while (begin_ == end_) {
      if (!TlsPending()) {
        const int ready = Wait(events, request_deadline_);
        if (ready <= 0) {
          failure_ = ready == 0 ? Failure::kRequestTimeout : Failure::kClosed;
          return -1;
        }
      }
      const ssize_t n = ReadSome(buffer_, sizeof(buffer_), &events);
      if (n == 0) return 0;
      if (n < 0) {
        if (events != 0) continue;
        failure_ = Failure::kClosed;
        return -1;
      }
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - begin_);
    if (request_bytes_ + static_cast<int64_t>(n) > limits_.max_request_bytes) {
      failure_ = Failure::kRequestTooLarge;
      return -1;
    }
    std::memcpy(ptr, buffer_ + begin_, n);
    begin_ += n;
    request_bytes_ += static_cast<int64_t>(n);
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    // After a failed read (peer gone, server stopping) nothing is answered.
    if (write_failed_ || failure_ == Failure::kClosed) return -1;
    const Clock::time_point deadline =
        Clock::now() + ToClock(limits_.write_timeout);
    size_t sent = 0;
    while (sent < size) {
      short events = POLLOUT;
      const ssize_t n = WriteSome(ptr + sent, size - sent, &events);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (events == 0) {
        write_failed_ = true;
        return -1;
      }
      const int ready = Wait(events, deadline);
      if (ready <= 0) {
        write_failed_ = true;
        write_timed_out_ = ready == 0;
        return -1;
      }
    }
    wrote_ = true;
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    PeerAddress(/*local=*/false, sock_, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    PeerAddress(/*local=*/true, sock_, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  // Whether the buffered bytes hold a request's line and headers up to the
  // empty line that ends them (httplib accepts LF as well as CRLF).
  bool HeadersComplete() const {
    const absl::string_view buffered(buffer_ + begin_, end_ - begin_);
    return absl::StrContains(buffered, "\n\r\n") ||
           absl::StrContains(buffered, "\n\n");
  }

  // Whether OpenSSL holds decrypted bytes the socket will not signal.
  bool TlsPending() const {
    return ssl_ != nullptr && SSL_pending(ssl_.get()) > 0;
  }

  // After an SSL call returned `rc` <= 0: the poll events it waits for, or
  // 0 when the connection failed or ended.
  short WantedEvents(int rc) const {
    switch (SSL_get_error(ssl_.get(), rc)) {
      case SSL_ERROR_WANT_READ:
        return POLLIN;
      case SSL_ERROR_WANT_WRITE:
        return POLLOUT;
      default:
        return 0;
    }
  }

  // One non-blocking read of up to `size` bytes into `into`: > 0 bytes, 0 at
  // the end of the stream, -1 with `events` set to what to wait for (0:
  // failed).
  ssize_t ReadSome(char* into, size_t size, short* events) {
    if (ssl_ == nullptr) {
      const ssize_t n = recv(sock_, into, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      const bool again =
          errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      *events = again ? POLLIN : 0;
      return -1;
    }
    ERR_clear_error();
    const int n = SSL_read(ssl_.get(), into, static_cast<int>(size));
    if (n > 0) return n;
    if (SSL_get_error(ssl_.get(), n) == SSL_ERROR_ZERO_RETURN) return 0;
    *events = WantedEvents(n);
    ERR_clear_error();
    return -1;
  }

  // One non-blocking write: bytes taken, or -1 with `events` set to what to
  // wait for (0: failed).
  ssize_t WriteSome(const char* ptr, size_t size, short* events) {
    if (ssl_ == nullptr) {
      const ssize_t n = send(sock_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) return n;
      const bool again =
          n == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      *events = again ? POLLOUT : 0;
      return -1;
    }
    ERR_clear_error();
    const int n =
        SSL_write(ssl_.get(), ptr,
                  static_cast<int>(std::min<size_t>(size, size_t{INT_MAX})));
    if (n > 0) return n;
    *events = WantedEvents(n);
    ERR_clear_error();
    return -1;
  }

  // poll()s the socket for `events` until `deadline`: 1 when ready (or in
  // error, which the next recv/send reports), 0 at the deadline, -1 when
  // the server stops or poll fails.
  int Wait(short events, Clock::time_point deadline) const {
    for (;;) {
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return 0;
      pollfd fds[2] = {{sock_, events, 0}, {stop_fd_, POLLIN, 0}};
      const int rc = poll(
          fds, 2, static_cast<int>(std::min<int64_t>(left.count(), INT_MAX)));
      if (rc < 0) {
        if (errno == EINTR) continue;
        return -1;
      }
      if (fds[1].revents != 0) return -1;
      if (fds[0].revents != 0) return 1;
    }
  }

  struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };

  const socket_t sock_;
  const int stop_fd_;
  std::unique_ptr<SSL, SslFree> ssl_;
  const ConnectionLimits& limits_;
  char buffer_[4096];
  size_t begin_ = 0;
  size_t end_ = 0;
  Clock::time_point request_deadline_;
  int64_t request_bytes_ = 0;
  Failure failure_ = Failure::kNone;
  bool wrote_ = false;
  bool close_after_response_ = false;
  bool routed_ = false;
  bool write_failed_ = false;
  bool write_timed_out_ = false;
  std::atomic<bool> evicted_{false};
};

thread_local GuardedServer::ConnectionStream* GuardedServer::current_stream_ =
    nullptr;
thread_local GuardedServer::ConnectionPool* GuardedServer::accepting_pool_ =
    nullptr;

// httplib's task queue, used only as a hook: httplib's task for an accepted
// socket runs at once on the accepting thread and comes back through
// process_and_close_socket to Accept(). Admitted connections are served one
// thread each, started on demand and kept for the next until shutdown; a
// connection that is not admitted is answered 503 there and then. Nothing
// waits in a queue for a thread that may never come.
class GuardedServer::ConnectionPool final : public httplib::TaskQueue {
 public:
  explicit ConnectionPool(GuardedServer* server) : server_(server) {}
  ~ConnectionPool() override = default;

  void enqueue(std::function<void()> fn) override {
    accepting_pool_ = this;
    fn();
    accepting_pool_ = nullptr;
  }

  // On the accepting thread: admits `sock` (registered as waiting for its
  // first request from now on) or rejects it.
  void Accept(socket_t sock) ABSL_LOCKS_EXCLUDED(mu_) {
    auto stream = std::make_unique<ConnectionStream>(
        sock, server_->stop_fd_, server_->limits_,
        Clock::now() + ToClock(server_->limits_.request_timeout));
    {
      absl::MutexLock lock(&mu_);
      JoinExited();
      if (Admit()) {
        ++busy_;
        server_->open_.store(busy_, std::memory_order_relaxed);
        server_->accepted_total_.fetch_add(1, std::memory_order_relaxed);
        server_->EnterWaiting(*stream);
        GuardedServer* server = server_;
        ConnectionStream* owned = stream.release();
        jobs_.push_back([server, owned] {
          server->Serve(std::unique_ptr<ConnectionStream>(owned));
        });
        if (jobs_.size() > static_cast<size_t>(idle_ + starting_)) {
          ++starting_;
          std::thread thread([this] { Work(); });
          const std::thread::id id = thread.get_id();
          threads_.emplace(id, std::move(thread));
        }
        return;
      }
    }
    server_->Reject(sock);
  }

  void shutdown() override {
    std::unordered_map<std::thread::id, std::thread> threads;
    {
      absl::MutexLock lock(&mu_);
      shutting_down_ = true;
      threads.swap(threads_);
      exited_.clear();
    }
    for (auto& [id, thread] : threads) thread.join();
  }

 private:
  void Work() ABSL_LOCKS_EXCLUDED(mu_) {
    mu_.Lock();
    --starting_;
    for (;;) {
      ++idle_;
      const bool woken = mu_.AwaitWithTimeout(
          absl::Condition(this, &ConnectionPool::HasJobOrShutdown),
          kIdleThreadLifetime);
      --idle_;
      // Queued connections are still served (they end at once: the stop
      // eventfd is set), so that every accepted socket is closed.
      if (jobs_.empty()) {
        if (shutting_down_ || !woken) break;
        continue;
      }
      std::function<void()> fn = std::move(jobs_.front());
      jobs_.pop_front();
      mu_.Unlock();
      fn();
      mu_.Lock();
      --busy_;
      server_->open_.store(busy_, std::memory_order_relaxed);
    }
    // Past this unlock the thread only returns: joining it cannot block.
    if (!shutting_down_) exited_.push_back(std::this_thread::get_id());
    mu_.Unlock();
  }

  // Joins the threads that left Work() for lack of connections.
  void JoinExited() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::thread::id id : exited_) {
      auto it = threads_.find(id);
      it->second.join();
      threads_.erase(it);
    }
    exited_.clear();
  }

  // Below the cap a connection is admitted. At the cap the connection that
  // has waited longest for a request (idle, or trickling one) makes room
  // and ends within moments. Connections so ending still hold a thread;
  // at twice the cap the accepting thread waits (up to 100 ms, newcomers
  // wait in the kernel's accept queue meanwhile) for some to end rather
  // than start more threads. False: the newcomer gets 503.
  bool Admit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int cap = server_->limits_.max_connections;
    if (busy_ < cap) return true;
    if (busy_ >= 2 * cap) {
      mu_.AwaitWithTimeout(absl::Condition(this, &ConnectionPool::BelowCeiling),
                           absl::Milliseconds(100));
    }
    return BelowCeiling() && server_->EvictOldestWaiting();
  }

  bool BelowCeiling() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return busy_ < 2 * server_->limits_.max_connections;
  }

  bool HasJobOrShutdown() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !jobs_.empty() || shutting_down_;
  }

  GuardedServer* const server_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::thread::id, std::thread> threads_
      ABSL_GUARDED_BY(mu_);
  // Threads that ended (idle too long), to join.
  std::vector<std::thread::id> exited_ ABSL_GUARDED_BY(mu_);
  // Connections being served or waiting for their thread.
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  // Threads waiting for a job, and threads started but not yet waiting.
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  int starting_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

GuardedServer::GuardedServer(const ConnectionLimits& limits)
    : limits_(limits),
      stop_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      busy_message_(absl::StrCat(
          "http: closed to make room for other connections (limit ",
          limits.max_connections, ")\n")),
      rejected_response_(
          CannedResponse("503 Service Unavailable",
                         absl::StrCat("http: too many open connections (limit ",
                                      limits.max_connections, ")\n"))) {
  new_task_queue = [this] { return new ConnectionPool(this); };
  // httplib advertises these in its Keep-Alive header and checks declared
  // body sizes against the payload limit (413).
  set_keep_alive_timeout(
      static_cast<time_t>(absl::ToInt64Seconds(limits.keepalive_timeout)));
  set_keep_alive_max_count(
      static_cast<size_t>(limits.max_requests_per_connection));
  set_payload_max_length(static_cast<size_t>(limits.max_request_bytes));
  // Runs once the headers are in, before httplib reads a body.
  set_pre_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        return Screen(req, res);
      });
  // httplib answers 400 when reading the request fails; say why instead.
  set_error_handler(HandlerWithResponse(
      [this](const httplib::Request&, httplib::Response& res) {
        if (current_stream_ == nullptr) return HandlerResponse::Unhandled;
        switch (current_stream_->failure()) {
          case ConnectionStream::Failure::kRequestTimeout:
            res.status = 408;
            res.set_header("Connection", "close");
            res.set_content(TimeoutMessage(), "text/plain; charset=utf-8");
            return HandlerResponse::Handled;
          case ConnectionStream::Failure::kRequestTooLarge:
            res.status = 431;
            res.set_header("Connection", "close");
            res.set_content(TooLargeMessage(), "text/plain; charset=utf-8");
            return HandlerResponse::Handled;
          case ConnectionStream::Failure::kNone:
          case ConnectionStream::Failure::kClosed:
            break;
        }
        // 400 before routing is httplib's answer to a request it could not
        // parse: cut off by an eviction, or malformed. In the latter case
        // what follows cannot be trusted to start a request: close.
        if (res.status != 400 || current_stream_->routed()) {
          return HandlerResponse::Unhandled;
        }
        res.set_header("Connection", "close");
        current_stream_->CloseAfterResponse();
        if (current_stream_->evicted()) {
          res.status = 503;
          res.set_content(busy_message_, "text/plain; charset=utf-8");
        } else {
          res.set_content(kMalformedMessage, "text/plain; charset=utf-8");
        }
        return HandlerResponse::Handled;
      }));
}

GuardedServer::~GuardedServer() {
  if (stop_fd_ >= 0) close(stop_fd_);
}

bool GuardedServer::is_valid() const {
  return stop_fd_ >= 0 && httplib::Server::is_valid();
}

bool GuardedServer::RaiseBacklog(int backlog) {
  return ::listen(svr_sock_, backlog) == 0;
}

void GuardedServer::Shutdown() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(stop_fd_, &one, sizeof(one));
  stop();
}

HttpConnectionCounters GuardedServer::Counters() const {
  HttpConnectionCounters c;
  c.open = open_.load(std::memory_order_relaxed);
  c.accepted_total = accepted_total_.load(std::memory_order_relaxed);
  c.rejected_total = rejected_total_.load(std::memory_order_relaxed);
  c.request_timeouts_total =
      request_timeouts_total_.load(std::memory_order_relaxed);
  c.oversized_requests_total =
      oversized_requests_total_.load(std::memory_order_relaxed);
  c.write_timeouts_total =
      write_timeouts_total_.load(std::memory_order_relaxed);
  c.evicted_total = evicted_total_.load(std::memory_order_relaxed);
  c.tls_handshake_failures_total =
      tls_handshake_failures_total_.load(std::memory_order_relaxed);
  return c;
}

std::string GuardedServer::TimeoutMessage() const {
  return absl::StrCat("http: request not received within ",
                      absl::FormatDuration(limits_.request_timeout), "\n");
}

std::string GuardedServer::TooLargeMessage() const {
  return absl::StrCat("http: request larger than ", limits_.max_request_bytes,
                      " bytes\n");
}

void GuardedServer::EnterWaiting(ConnectionStream& stream) {
  absl::MutexLock lock(&waiting_mu_);
  waiting_pos_[&stream] = waiting_.insert(waiting_.end(), &stream);
}

void GuardedServer::LeaveWaiting(ConnectionStream& stream) {
  absl::MutexLock lock(&waiting_mu_);
  const auto pos = waiting_pos_.find(&stream);
  if (pos == waiting_pos_.end()) return;
  waiting_.erase(pos->second);
  waiting_pos_.erase(pos);
}

bool GuardedServer::EvictOldestWaiting() {
  absl::MutexLock lock(&waiting_mu_);
  if (waiting_.empty()) return false;
  ConnectionStream* oldest = waiting_.front();
  waiting_.pop_front();
  waiting_pos_.erase(oldest);
  oldest->MarkEvicted();
  // Its owner closes the socket only after LeaveWaiting (this mutex), so
  // the descriptor is still its. Shutting down the read side wakes its
  // poll: an idle connection ends, one part-way through its headers is
  // answered 503.
  shutdown(oldest->socket(), SHUT_RD);
  evicted_total_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

httplib::Server::HandlerResponse GuardedServer::Screen(
    const httplib::Request& req, httplib::Response& res) {
  // The headers are in: from here the connection is busy, not waiting.
  if (current_stream_ != nullptr) {
    current_stream_->MarkRouted();
    LeaveWaiting(*current_stream_);
  }
  if (static_cast<int64_t>(req.target.size()) > limits_.max_uri_bytes) {
    res.status = 414;
    res.set_content(absl::StrCat("http: request target longer than ",
                                 limits_.max_uri_bytes, " bytes\n"),
                    "text/plain; charset=utf-8");
    return HandlerResponse::Handled;
  }
  // httplib would read (and drop) a declared body of any size before
  // answering 413; answer at once instead, and close, since the unread body
  // cannot be told apart from a next request. A malformed length is left
  // to httplib (400).
  int64_t declared = 0;
  if (req.has_header("Content-Length") &&
      absl::SimpleAtoi(req.get_header_value("Content-Length"), &declared) &&
      declared > limits_.max_request_bytes) {
    oversized_requests_total_.fetch_add(1, std::memory_order_relaxed);
    res.status = 413;
    res.set_header("Connection", "close");
    res.set_content(TooLargeMessage(), "text/plain; charset=utf-8");
    if (current_stream_ != nullptr) current_stream_->CloseAfterResponse();
    return HandlerResponse::Handled;
  }
  return HandlerResponse::Unhandled;
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  accepting_pool_->Accept(sock);
  return true;
}

void GuardedServer::Serve(std::unique_ptr<ConnectionStream> owned) {
  ConnectionStream& stream = *owned;
  const socket_t sock = stream.socket();
  current_stream_ = &stream;
  // The first request's time counts from the accept: a client that sends
  // nothing is closed at the request deadline. Accept() registered the
  // connection as waiting.
  Clock::time_point deadline = stream.request_deadline();
  // Under TLS the handshake comes first, within the first request's time.
  if (tls_ != nullptr && !stream.StartTls(tls_->NewSsl())) {
    tls_handshake_failures_total_.fetch_add(1, std::memory_order_relaxed);
    LeaveWaiting(stream);
    current_stream_ = nullptr;
    close(sock);
    return;
  }
  bool answered_error = false;
  for (int served = 0; served < limits_.max_requests_per_connection; ++served) {
    if (served > 0) {
      // Between requests a connection may be evicted to make room, unless
      // its next request is already here: a client pipelining requests
      // (and not reading its responses) is busy, even in the moment
      // before its next request is parsed. One still sending its headers
      // stays evictable, as before its first request.
      if (!stream.NextRequestReceived()) {
        EnterWaiting(stream);
        if (!stream.WaitForRequest(Clock::now() +
                                   ToClock(limits_.keepalive_timeout))) {
          break;
        }
      }
      deadline = Clock::now() + ToClock(limits_.request_timeout);
    } else if (!stream.WaitForRequest(deadline)) {
      request_timeouts_total_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    stream.BeginRequest(deadline);
    bool connection_closed = false;
    const bool last = served + 1 == limits_.max_requests_per_connection;
    const bool ok =
        process_request(stream, last, connection_closed, /*setup_request=*/{});
    LeaveWaiting(stream);
    if (stream.evicted()) break;
    if (stream.failure() == ConnectionStream::Failure::kRequestTimeout ||
        stream.failure() == ConnectionStream::Failure::kRequestTooLarge) {
      const bool timeout =
          stream.failure() == ConnectionStream::Failure::kRequestTimeout;
      (timeout ? request_timeouts_total_ : oversized_requests_total_)
          .fetch_add(1, std::memory_order_relaxed);
      // A request line cut short never reaches httplib's error handler.
      if (!stream.wrote()) {
        const std::string response =
            timeout ? CannedResponse("408 Request Timeout", TimeoutMessage())
                    : CannedResponse("431 Request Header Fields Too Large",
                                     TooLargeMessage());
        stream.write(response.data(), response.size());
      }
      answered_error = true;
      break;
    }
    if (stream.write_timed_out()) {
      write_timeouts_total_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!ok || connection_closed || stream.close_after_response()) break;
  }
  LeaveWaiting(stream);
  current_stream_ = nullptr;
  stream.EndTls();
  shutdown(sock, SHUT_WR);
  if (answered_error) {
    // A client still sending would get a reset on close, which can discard
    // the error response before it reads it: read and drop what it still
    // sends, for a short and bounded while.
    char sink[4096];
    int64_t drained = 0;
    const Clock::time_point until = Clock::now() + std::chrono::seconds(1);
    while (drained < (1 << 20) && Clock::now() < until) {
      pollfd fds[2] = {{sock, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (poll(fds, 2, 100) < 0 && errno != EINTR) break;
      if (fds[1].revents != 0) break;
      if (fds[0].revents == 0) continue;
      const ssize_t n = recv(sock, sink, sizeof(sink), MSG_DONTWAIT);
      if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) break;
      if (n > 0) drained += n;
    }
  }
  close(sock);
}

void GuardedServer::Reject(socket_t sock) {
  rejected_total_.fetch_add(1, std::memory_order_relaxed);
  // A TLS client cannot read a plaintext 503, and a handshake would hold
  // the accepting thread: just close.
  if (tls_ != nullptr) {
    close(sock);
    return;
  }
  // A fresh socket's send buffer is empty: this never blocks the accepting
  // thread.
  [[maybe_unused]] const ssize_t sent =
      send(sock, rejected_response_.data(), rejected_response_.size(),
           MSG_NOSIGNAL | MSG_DONTWAIT);
  shutdown(sock, SHUT_WR);
  // Drop what the client already sent, so that the close does not reset
  // the connection before it reads the 503.
  char sink[4096];
  while (recv(sock, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
  }
  close(sock);
}

}  // namespace satlab::http
