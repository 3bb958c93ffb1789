// What /metrics reports of the HTTP side port's connections, as counted by
// GuardedServer (guarded_server.h).
#ifndef SATLAB_SERVER_HTTP_CONNECTION_COUNTERS_H_
#define SATLAB_SERVER_HTTP_CONNECTION_COUNTERS_H_

#include <cstdint>

namespace satlab::http {

struct HttpConnectionCounters {
  int64_t open = 0;
  int64_t accepted_total = 0;
  // Over max_connections with every connection busy: answered 503 by the
  // accepting thread.
  int64_t rejected_total = 0;
  // Closed at max_connections to make room for a new connection (the one
  // that had waited longest for a request).
  int64_t evicted_total = 0;
  // Closed at the request deadline (408 if part of a request had arrived).
  int64_t request_timeouts_total = 0;
  // Answered 431 or 413.
  int64_t oversized_requests_total = 0;
  // Closed because a write was not taken within the write timeout.
  int64_t write_timeouts_total = 0;
  // Under TLS: connections closed because the handshake failed (wrong
  // protocol, no or untrusted client certificate) or did not finish within
  // the request timeout.
  int64_t tls_handshake_failures_total = 0;
};

}  // namespace satlab::http

#endif  // SATLAB_SERVER_HTTP_CONNECTION_COUNTERS_H_
