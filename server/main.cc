// satlab-server: flags (or SATLAB_* environment variables) -> AppOptions ->
// App::Start -> wait for SIGTERM/SIGINT -> App::Shutdown (graceful). What
// the process is made of, and in which order it starts and stops, is
// server/app.cc's business; this file only owns the flags, logging set-up
// and signals.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app.h"
#include "server/auth/api_keys.h"
#include "server/engine/blas_guard.h"
#include "server/engine/gemm.h"
#include "server/engine/kernels.h"
#include "server/engine/native_engine.h"
#include "server/http/http_server.h"
#include "server/logging.h"
#include "server/service/server.h"
#include "server/store/postgres_store.h"
#include "spdlog/spdlog.h"

namespace satlab {

// A leading "~/" stands for $HOME, as in a shell: the default data
// directory is written that way so that --help and the docs show one value
// on every machine.
std::string ExpandHome(const std::string& path) {
  const char* home = std::getenv("HOME");
  if (path.rfind("~/", 0) != 0 || home == nullptr || *home != '/') return path;
  return absl::StrCat(home, path.substr(1));
}

}  // namespace satlab

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to listen on for gRPC (0.0.0.0 for every interface, as in "
          "a container).");
ABSL_FLAG(int, port, 50051, "gRPC port; 0 picks a free port (printed).");
ABSL_FLAG(int, compute_threads, 0,
          "Threads running numerics; 0 chooses: one per core the process may "
          "use (affinity mask and cgroup CPU quota), or cores / "
          "blas_threads when that is set.");
ABSL_FLAG(int, blas_threads, 0,
          "Cores each large matrix product may use (OpenBLAS's pool); 0 "
          "chooses: cores / compute_threads (1 with the default compute "
          "threads), so that compute_threads x blas_threads never exceeds the "
          "cores. Explicit values above that are kept, with a warning.");
ABSL_FLAG(std::string, kernels, "auto",
          "The engine's own kernels: auto (the widest this CPU supports), "
          "baseline (SSE2), avx2 or avx512. Every variant gives the same "
          "bits; this only changes speed.");
ABSL_FLAG(std::string, engine, "portable",
          "The network engine: portable (the same bits on every x86-64 CPU) "
          "or native (the network code compiled for this CPU's level, "
          "x86-64-v3 or -v4: a -march=native build's speed, bits that differ "
          "in the last places from portable and between levels; every "
          "replica of a cluster must run the same engine). docs/"
          "configuration.md.");
ABSL_FLAG(std::string, engine_dir, "",
          "Where --engine=native finds libsatlab_engine_<level>.so; empty: "
          "next to the satlab-server executable, then ../lib/satlab from "
          "it.");
ABSL_FLAG(bool, blas_core_guard, true,
          "When OpenBLAS picks a generic (SSE-era) core on a CPU with AVX2 "
          "or AVX-512, re-execute once with OPENBLAS_CORETYPE set to a "
          "matching core, keep it only if its products pass a float64 "
          "self-check, and fall back to the original core otherwise.");
ABSL_FLAG(int, max_queued_calls, 1024,
          "Calls waiting for a compute thread before RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_networks, 10000, "Networks the server holds at most.");
ABSL_FLAG(std::string, data_dir, "~/.local/state/satlab",
          "Directory of the durable store (SQLite, <data_dir>/satlab.db; "
          "created if missing, one server per directory; a leading ~/ is "
          "$HOME). Every network, its "
          "optimizer state and recent request ids survive a restart. Empty: "
          "the ephemeral in-memory store, emptied by a restart.");
ABSL_FLAG(bool, data_sync, true,
          "Sync every commit of the durable store to disk, so what the server "
          "acknowledged survives a power loss (SQLite synchronous=FULL); "
          "false survives a crash of the process only (NORMAL).");
ABSL_FLAG(int64_t, experiment_claim_poll_ms, 500,
          "With --store: how often a replica renews its experiment claims, "
          "reads the progress of the experiments it streams and claims free "
          "variants from the database (docs/architecture.md).");
ABSL_FLAG(int32_t, experiment_claim_slots, 0,
          "With --store: variants of experiments (its own or other "
          "replicas') this replica runs at once; 0 = one per compute "
          "thread.");
ABSL_FLAG(std::string, store, "",
          "The shared durable store: a PostgreSQL connection URI, "
          "postgresql://user@host:port/database (docs/storage.md); any "
          "number of replicas may share one database (docs/deploy.md, "
          "Cluster). Given, it wins over --data_dir "
          "and --data_sync. Keep the password out of it (flags show in ps): "
          "libpq reads PGPASSWORD and ~/.pgpass.");
ABSL_FLAG(std::string, replica_id, "",
          "This replica's name on its writer leases in a shared store "
          "(--store), shown to a writer another replica refuses; unique per "
          "process. Empty: <hostname>-<pid>-<random>. On Kubernetes, the "
          "pod's name.");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(5),
          "With --store: how long a replica's writer lease on a network "
          "lasts unless renewed (a Train stream renews it every third of "
          "this). A replica that dies leaves its networks unwritable this "
          "long; 100ms to 1h.");
ABSL_FLAG(int64_t, max_parameters, 50'000'000,
          "Trainable scalars per network at most.");
ABSL_FLAG(int64_t, max_layers, 64, "Layers per network at most.");
ABSL_FLAG(int64_t, max_units, 65536, "Units per layer at most.");
ABSL_FLAG(int64_t, max_batch_rows, 1'000'000,
          "Rows per minibatch (or Evaluate dataset) at most.");
ABSL_FLAG(int64_t, max_batches_per_message, 1024,
          "Minibatches one TrainStep or one Train stream message may carry "
          "(`batches`) at most; their rows together are bounded by "
          "--max_batch_rows.");
ABSL_FLAG(int64_t, max_call_scratch_bytes, int64_t{1} << 30,
          "Scratch memory one Forward/Evaluate/ComputeGradients/TrainStep (or "
          "experiment step) may use. Forward runs long batches in chunks "
          "within it, Evaluate and ComputeGradients in fixed blocks; a "
          "TrainStep or experiment step needing more is RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, memory_budget_bytes, 0,
          "Server-wide memory budget: network parameters + optimizer state, "
          "plus running calls' scratch and results. Over it: "
          "RESOURCE_EXHAUSTED. 0 means 75% of the cgroup limit, else of "
          "physical memory.");
ABSL_FLAG(int, request_ids_per_network, 32,
          "Recent TrainStep/SetParameters request_ids remembered per network "
          "for idempotent retries.");
ABSL_FLAG(int64_t, train_commit_every_steps, 10000,
          "A Train stream commits its network to the store after this many "
          "steps since its last commit (0: not by count), and when it ends.");
ABSL_FLAG(int64_t, max_experiment_record_bytes, 32 << 20,
          "Bytes of one kept experiment (spec + curves) at most; later epochs "
          "are not kept (curves_truncated). Keep it below "
          "--max_message_bytes so GetExperiment can return it.");
ABSL_FLAG(double, experiment_record_interval_seconds, 1,
          "A running experiment writes its curves to the store at most this "
          "often, and when it ends.");
ABSL_FLAG(double, train_commit_interval_seconds, 1,
          "A Train stream commits its network to the store once this long has "
          "passed since its last commit (0: not by time), and when it ends.");
ABSL_FLAG(int, max_message_bytes, 64 << 20,
          "Largest gRPC message received or sent, in bytes.");
ABSL_FLAG(int, train_stream_window, 4,
          "Minibatches a Train stream buffers ahead (and results it holds "
          "unsent) before it stops reading.");
ABSL_FLAG(double, stream_idle_timeout_seconds, 120,
          "A Train stream that for this long neither sends a message nor "
          "takes a response (while none of its steps computes) ends with "
          "DEADLINE_EXCEEDED and releases the network's writer slot; 0 turns "
          "the timeout off.");
ABSL_FLAG(int, max_open_streams, 1000,
          "Train, WatchMetrics and RunExperiment streams open at once, "
          "server-wide; one more gets RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_stream_buffered_bytes, int64_t{32} << 20,
          "Minibatch bytes one Train stream holds received but not yet "
          "stepped before it stops reading (the client's writes then wait).");
ABSL_FLAG(int64_t, max_buffered_bytes, int64_t{256} << 20,
          "Minibatch bytes all Train streams together hold before every one "
          "of them stops reading until steps free some.");
ABSL_FLAG(int64_t, trim_after_bytes, int64_t{64} << 20,
          "After Train streams released this many buffered bytes, the server "
          "returns free heap memory to the OS (glibc malloc_trim, at most "
          "once a second); 0 turns it off.");
ABSL_FLAG(int, max_streams_per_connection, 100,
          "Calls open at once on one client connection (HTTP/2 "
          "MAX_CONCURRENT_STREAMS); further calls wait in the client.");
ABSL_FLAG(bool, http2_bdp_probe, false,
          "gRPC's bandwidth-delay-product probe, which widens stream receive "
          "windows: on, data for streams that stopped reading piles up in "
          "the transport beyond --max_buffered_bytes.");
ABSL_FLAG(double, keepalive_time_seconds, 60,
          "The server pings a connection silent for this long, and closes it "
          "if no answer comes within --keepalive_timeout_seconds.");
ABSL_FLAG(double, keepalive_timeout_seconds, 20,
          "Time a keepalive ping may go unanswered before the connection is "
          "closed.");
ABSL_FLAG(double, min_client_ping_interval_seconds, 10,
          "Clients may ping at most this often without data; each faster "
          "ping is a strike.");
ABSL_FLAG(int, max_ping_strikes, 2,
          "Strikes after which a connection is closed (GOAWAY "
          "too_many_pings); 0 allows any number.");
ABSL_FLAG(double, max_connection_idle_seconds, 600,
          "A connection without a call for this long is closed (GOAWAY; the "
          "client reconnects on its next call); 0 turns this off.");
ABSL_FLAG(double, max_connection_age_seconds, 86400,
          "A connection older than this gets GOAWAY (the client reconnects); "
          "0 turns this off.");
ABSL_FLAG(double, max_connection_age_grace_seconds, 600,
          "Time the calls of a connection past its age get to finish before "
          "they are cancelled.");
ABSL_FLAG(double, shutdown_grace_seconds, 10,
          "On SIGTERM/SIGINT, seconds in-flight calls get to finish.");
ABSL_FLAG(int, http_port, 9464,
          "HTTP side port for /metrics (Prometheus) and the live dashboard "
          "at /, on --host; 0 picks a free port (printed), -1 turns it off.");
ABSL_FLAG(double, http_request_timeout_seconds, 10,
          "HTTP: seconds a request (line, headers, body) has to arrive whole, "
          "from the accept (or its first byte on a kept-alive connection), "
          "however slowly it trickles; then 408 and the connection closes.");
ABSL_FLAG(double, http_write_timeout_seconds, 10,
          "HTTP: seconds each write (response headers, body, an event) has "
          "to be taken by the client; then the connection closes.");
ABSL_FLAG(double, http_keepalive_timeout_seconds, 5,
          "HTTP: seconds an idle kept-alive connection stays open.");
ABSL_FLAG(int, http_max_requests_per_connection, 100,
          "HTTP: requests served on one connection before it closes.");
ABSL_FLAG(int, http_max_connections, 256,
          "HTTP: open connections at most (one thread each). At the cap the "
          "one waiting longest for a request is closed to make room; if all "
          "are busy, a new one gets 503 at once. Must exceed "
          "--http_max_event_streams.");
ABSL_FLAG(int, http_max_event_streams, 32,
          "HTTP: concurrent dashboard event streams (/api/events); more get "
          "503.");
ABSL_FLAG(int64_t, http_max_request_bytes, 32 * 1024,
          "HTTP: bytes of one request's line and headers (431 beyond) or "
          "body (413 beyond).");
ABSL_FLAG(int, http_max_uri_bytes, 8192,
          "HTTP: bytes of a request target (path and query), at most 8192; "
          "longer gets 414.");
ABSL_FLAG(int64_t, metrics_history, 10000,
          "Metric events kept for WatchMetrics/dashboard replay (all "
          "networks together).");
ABSL_FLAG(int64_t, metrics_subscriber_buffer, 1024,
          "Events buffered per WatchMetrics or dashboard stream before its "
          "oldest are dropped (and counted in dropped_events).");
ABSL_FLAG(int64_t, metrics_flush_interval_ms, 500,
          "With --data_dir or --store, new metric events are written to the "
          "store in one batch this often (so WatchMetrics replay survives a "
          "restart; with --store it is also when other replicas can see "
          "them).");
ABSL_FLAG(int64_t, metrics_feed_poll_ms, 1000,
          "With --store (replicas sharing PostgreSQL): the longest a replica "
          "waits for a notification of other replicas' metric events before "
          "it reads them anyway (bounds the delay when a notification is "
          "lost).");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of the gRPC port (and of the HTTP port "
          "unless --http_tls_cert_file is set). With --tls_key_file the port "
          "serves TLS only.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: set, the gRPC port requires mutual TLS (a "
          "client certificate signed by one of them).");
ABSL_FLAG(double, tls_refresh_interval_seconds, 10,
          "The certificate, key and client CA files are read again this "
          "often (and the HTTP port's also on SIGHUP); new connections get "
          "changed files, open connections and streams keep theirs.");
ABSL_FLAG(std::string, http_tls_cert_file, "",
          "PEM certificate chain of the HTTP port; empty: --tls_cert_file.");
ABSL_FLAG(std::string, http_tls_key_file, "",
          "PEM private key of the HTTP port; empty: --tls_key_file.");
ABSL_FLAG(std::string, http_tls_client_ca_file, "",
          "PEM CA certificates: set, the HTTP port requires client "
          "certificates signed by them (not inherited from "
          "--tls_client_ca_file, so that browsers can reach the dashboard).");
ABSL_FLAG(bool, plaintext, false,
          "Serve plaintext (no TLS) on both ports even on a non-loopback "
          "--host. Without TLS files and without this flag, the server only "
          "starts on a loopback host (127.0.0.1, ::1, localhost).");
// Authentication, tenants and quotas (docs/security.md).
ABSL_FLAG(std::string, api_keys_file, "",
          "File of hashed API keys, one '<tenant> <user|admin> <salt> <hash> "
          "[quota=value ...]' per line (make a line with --hash_api_key); "
          "empty: none. With no keys and no --cert_tenants, authentication "
          "is off (loopback dev mode).");
ABSL_FLAG(std::string, api_keys, "",
          "Plaintext keys 'tenant:user|admin:key,...', hashed at start and "
          "then dropped; give them as SATLAB_API_KEYS (the environment, "
          "which is then wiped), not on the command line.");
ABSL_FLAG(std::string, cert_tenants, "",
          "Under mutual TLS: client certificate names (x509 common name or "
          "subject alternative name) mapped to tenants, "
          "'name=tenant:user|admin,...'.");
ABSL_FLAG(bool, hash_api_key, false,
          "Read an API key on stdin, print its keys-file line for "
          "--hash_tenant and --hash_role, and exit.");
ABSL_FLAG(std::string, hash_tenant, "", "--hash_api_key: the key's tenant.");
ABSL_FLAG(std::string, hash_role, "user",
          "--hash_api_key: the key's role, user or admin.");
ABSL_FLAG(int64_t, quota_networks, 0,
          "Networks each tenant may hold (0: unlimited; the keys file may "
          "override it per tenant with networks=N).");
ABSL_FLAG(int64_t, quota_parameters, 0,
          "Parameters over all of a tenant's networks (0: unlimited; "
          "parameters=N in the keys file).");
ABSL_FLAG(int64_t, quota_streams, 0,
          "Streaming calls (Train, WatchMetrics, RunExperiment, Export, "
          "Import) a tenant may have open (0: unlimited; streams=N).");
ABSL_FLAG(int64_t, quota_running_experiments, 0,
          "RunExperiment calls a tenant may have running (0: unlimited; "
          "experiments=N).");
ABSL_FLAG(double, quota_requests_per_second, 0,
          "Calls per second per tenant, token bucket (0: unlimited; "
          "requests_per_second=R).");
ABSL_FLAG(double, quota_request_burst, 0,
          "Token bucket size for --quota_requests_per_second (0: the rate, "
          "at least 1; request_burst=B).");
ABSL_FLAG(std::string, reflection, "auto",
          "gRPC server reflection: off, open, key (any valid API key), or "
          "auto (open without authentication, key with it); on = open.");
ABSL_FLAG(std::string, metrics_access, "auto",
          "/metrics: off, open, key (an admin API key), or auto (open "
          "without authentication, key with it).");
ABSL_FLAG(std::string, dashboard_access, "auto",
          "The dashboard's data: off, open, key (each key sees its tenant's "
          "networks), or auto (open without authentication, key with it).");
ABSL_FLAG(std::string, log_format, "text", "Log format: text or json.");
ABSL_FLAG(std::string, log_level, "info",
          "Log level: trace, debug, info, warn, error.");

namespace {

constexpr char kUsage[] =
    "gRPC training service for small neural networks.\n"
    "Every flag can also be set as SATLAB_<FLAG> (e.g. SATLAB_PORT=0).";

// Whether a flag is one of satlab-server's own (defined in this file), as
// opposed to one of a library's.
bool IsServerFlagFile(absl::string_view filename) {
  return absl::StrContains(filename, "server/main.cc");
}

// --help: the server's own flags with their defaults, then exit 0. (absl
// matches "main flags" by the program's name, satlab-server, so its --help
// printed none; and it exits 1, which scripts read as a failure.)
void PrintHelp() {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsServerFlagFile(flag->Filename())) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  std::printf(
      "satlab-server: %s\n\nFlags (--helpfull adds the libraries' "
      "flags):\n",
      kUsage);
  for (const absl::CommandLineFlag* flag : flags) {
    std::printf("  --%s (default: %s)\n", std::string(flag->Name()).c_str(),
                flag->DefaultValue().c_str());
    // The help text, wrapped at 78 columns under a 6-space indent.
    std::string line;
    for (absl::string_view word :
         absl::StrSplit(flag->Help(), ' ', absl::SkipEmpty())) {
      if (!line.empty() && line.size() + 1 + word.size() > 72) {
        std::printf("      %s\n", line.c_str());
        line.clear();
      }
      absl::StrAppend(&line, line.empty() ? "" : " ", word);
    }
    if (!line.empty()) std::printf("      %s\n", line.c_str());
  }
}

// Every flag defined in this file may also come from SATLAB_<FLAG> in the
// environment; a command-line flag wins over the environment.
void ApplyEnvironment() {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!IsServerFlagFile(flag->Filename())) continue;
    const std::string env =
        absl::StrCat("SATLAB_", absl::AsciiStrToUpper(std::string(name)));
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "satlab-server: %s=%s: %s\n", env.c_str(), value,
                   error.c_str());
      std::exit(2);
    }
  }
}

// The stop signals' handler writes the signal number here (write() is
// async-signal-safe); main blocks reading the other end.
int g_stop_pipe[2] = {-1, -1};

void OnStopSignal(int signal_number) {
  const int saved_errno = errno;
  // A full pipe means a stop is already pending: nothing more to say.
  [[maybe_unused]] const ssize_t written =
      write(g_stop_pipe[1], &signal_number, sizeof(signal_number));
  errno = saved_errno;
}

// --hash_api_key: the keys-file line of the key on stdin.
int HashApiKey() {
  std::string key;
  std::getline(std::cin, key);
  auto role =
      satlab::auth::ParseRole(absl::GetFlag(FLAGS_hash_role), "hash_role");
  auto entry =
      role.ok()
          ? satlab::auth::HashKey(absl::StripAsciiWhitespace(key),
                                  {absl::GetFlag(FLAGS_hash_tenant), *role})
          : absl::StatusOr<satlab::auth::KeyEntry>(role.status());
  if (!entry.ok()) {
    std::fprintf(stderr, "satlab-server: %s\n",
                 std::string(entry.status().message()).c_str());
    return 2;
  }
  std::printf("%s\n", satlab::auth::FormatKeyLine(*entry).c_str());
  return 0;
}

// Overwrites an environment variable's value in place (the initial
// environment stays readable in /proc/<pid>/environ otherwise), then
// removes it.
void WipeEnvironment(const char* name) {
  if (char* value = std::getenv(name); value != nullptr) {
    std::fill(value, value + std::strlen(value), 'x');
  }
  unsetenv(name);
}

// Keys, certificate tenants, quotas and access modes into `app`.
absl::Status AuthFromFlags(satlab::server::AppOptions* app) {
  satlab::service::AuthOptions& auth = app->server.service.auth;
  if (const std::string path = absl::GetFlag(FLAGS_api_keys_file);
      !path.empty()) {
    if (absl::Status s = auth.keys.AddFile(satlab::ExpandHome(path)); !s.ok()) {
      return s;
    }
  }
  std::string plaintext = absl::GetFlag(FLAGS_api_keys);
  absl::SetFlag(&FLAGS_api_keys, "");
  WipeEnvironment("SATLAB_API_KEYS");
  absl::Status added = auth.keys.AddPlaintext(plaintext);
  std::fill(plaintext.begin(), plaintext.end(), 'x');
  if (!added.ok()) return added;
  auto certs =
      satlab::service::ParseCertTenants(absl::GetFlag(FLAGS_cert_tenants));
  if (!certs.ok()) return certs.status();
  auth.cert_identities = *std::move(certs);
  auth.quotas.networks = absl::GetFlag(FLAGS_quota_networks);
  auth.quotas.parameters = absl::GetFlag(FLAGS_quota_parameters);
  auth.quotas.streams = absl::GetFlag(FLAGS_quota_streams);
  auth.quotas.running_experiments =
      absl::GetFlag(FLAGS_quota_running_experiments);
  auth.quotas.requests_per_second =
      absl::GetFlag(FLAGS_quota_requests_per_second);
  auth.quotas.request_burst = absl::GetFlag(FLAGS_quota_request_burst);

  const bool on = auth.enabled();
  const std::string reflection = absl::GetFlag(FLAGS_reflection);
  if (reflection == "off") {
    app->server.reflection = satlab::service::ReflectionAccess::kOff;
  } else if (reflection == "open" || reflection == "on") {
    // "on" is the value from before reflection could ask for a key.
    app->server.reflection = satlab::service::ReflectionAccess::kOpen;
  } else if (reflection == "key" || (reflection == "auto" && on)) {
    app->server.reflection = satlab::service::ReflectionAccess::kKey;
  } else if (reflection == "auto") {
    app->server.reflection = satlab::service::ReflectionAccess::kOpen;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("reflection: expected off, open, key or auto, got \"",
                     reflection, "\""));
  }
  if (app->http.has_value()) {
    const auto access =
        [on](const std::string& value,
             absl::string_view flag) -> absl::StatusOr<satlab::http::Access> {
      if (value == "auto") {
        return on ? satlab::http::Access::kKey : satlab::http::Access::kOpen;
      }
      return satlab::http::ParseAccess(value, flag);
    };
    auto metrics =
        access(absl::GetFlag(FLAGS_metrics_access), "metrics_access");
    if (!metrics.ok()) return metrics.status();
    auto dashboard =
        access(absl::GetFlag(FLAGS_dashboard_access), "dashboard_access");
    if (!dashboard.ok()) return dashboard.status();
    app->http->metrics_access = *metrics;
    app->http->dashboard_access = *dashboard;
  }
  return absl::OkStatus();
}

// The flags as options: everything the process runs with but logging.
satlab::server::AppOptions OptionsFromFlags() {
  satlab::server::AppOptions app;
  app.blas_threads = absl::GetFlag(FLAGS_blas_threads);
  app.shutdown_grace =
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));

  satlab::service::ServerOptions& options = app.server;
  options.listen_address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  options.compute_threads = absl::GetFlag(FLAGS_compute_threads);
  options.max_queued_calls = absl::GetFlag(FLAGS_max_queued_calls);
  options.max_networks = absl::GetFlag(FLAGS_max_networks);
  options.data_dir = satlab::ExpandHome(absl::GetFlag(FLAGS_data_dir));
  options.data_sync_full = absl::GetFlag(FLAGS_data_sync);
  options.store_url = absl::GetFlag(FLAGS_store);
  // One name per process for its writer leases, experiment claims and
  // metric feed (the hub is made before the server, so it is picked here).
  options.replica_id = absl::GetFlag(FLAGS_replica_id);
  if (options.replica_id.empty()) {
    options.replica_id = satlab::service::DefaultReplicaId();
  }
  options.lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  // A replica's experiment claims last as long as its writer leases: one
  // failover time for both.
  options.experiment_claims.ttl = options.lease_ttl;
  options.experiment_claims.poll =
      absl::Milliseconds(absl::GetFlag(FLAGS_experiment_claim_poll_ms));
  options.experiment_claims.slots = absl::GetFlag(FLAGS_experiment_claim_slots);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.service.limits.max_parameters = absl::GetFlag(FLAGS_max_parameters);
  options.service.limits.max_layers = absl::GetFlag(FLAGS_max_layers);
  options.service.limits.max_units = absl::GetFlag(FLAGS_max_units);
  options.service.limits.max_batch_rows = absl::GetFlag(FLAGS_max_batch_rows);
  options.service.max_batches_per_message =
      absl::GetFlag(FLAGS_max_batches_per_message);
  options.service.limits.max_call_scratch_bytes =
      absl::GetFlag(FLAGS_max_call_scratch_bytes);
  options.service.memory_budget_bytes =
      absl::GetFlag(FLAGS_memory_budget_bytes);
  options.service.request_ids_per_network =
      absl::GetFlag(FLAGS_request_ids_per_network);
  options.service.train_commit_every_steps =
      absl::GetFlag(FLAGS_train_commit_every_steps);
  options.service.train_commit_interval =
      absl::Seconds(absl::GetFlag(FLAGS_train_commit_interval_seconds));
  options.service.max_experiment_record_bytes =
      absl::GetFlag(FLAGS_max_experiment_record_bytes);
  options.service.experiment_record_interval =
      absl::Seconds(absl::GetFlag(FLAGS_experiment_record_interval_seconds));
  options.service.train_stream_window =
      absl::GetFlag(FLAGS_train_stream_window);
  options.service.streams.idle_timeout =
      absl::Seconds(absl::GetFlag(FLAGS_stream_idle_timeout_seconds));
  options.service.streams.max_open_streams =
      absl::GetFlag(FLAGS_max_open_streams);
  options.service.streams.max_stream_buffered_bytes =
      absl::GetFlag(FLAGS_max_stream_buffered_bytes);
  options.service.streams.max_buffered_bytes =
      absl::GetFlag(FLAGS_max_buffered_bytes);
  options.service.streams.trim_after_bytes =
      absl::GetFlag(FLAGS_trim_after_bytes);
  options.max_streams_per_connection =
      absl::GetFlag(FLAGS_max_streams_per_connection);
  options.http2_bdp_probe = absl::GetFlag(FLAGS_http2_bdp_probe);
  options.keepalive_time =
      absl::Seconds(absl::GetFlag(FLAGS_keepalive_time_seconds));
  options.keepalive_timeout =
      absl::Seconds(absl::GetFlag(FLAGS_keepalive_timeout_seconds));
  options.min_client_ping_interval =
      absl::Seconds(absl::GetFlag(FLAGS_min_client_ping_interval_seconds));
  options.max_ping_strikes = absl::GetFlag(FLAGS_max_ping_strikes);
  options.max_connection_idle =
      absl::Seconds(absl::GetFlag(FLAGS_max_connection_idle_seconds));
  options.max_connection_age =
      absl::Seconds(absl::GetFlag(FLAGS_max_connection_age_seconds));
  options.max_connection_age_grace =
      absl::Seconds(absl::GetFlag(FLAGS_max_connection_age_grace_seconds));
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.tls.refresh_interval =
      absl::Seconds(absl::GetFlag(FLAGS_tls_refresh_interval_seconds));
  options.plaintext = absl::GetFlag(FLAGS_plaintext);

  app.metrics.history_size = absl::GetFlag(FLAGS_metrics_history);
  app.metrics.subscriber_buffer =
      absl::GetFlag(FLAGS_metrics_subscriber_buffer);
  app.metrics.history_flush_interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_metrics_flush_interval_ms));
  app.metrics.feed_poll_interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_metrics_feed_poll_ms));
  app.metrics.replica_id = options.replica_id;

  if (absl::GetFlag(FLAGS_http_port) >= 0) {
    satlab::http::HttpServerOptions& http = app.http.emplace();
    http.host = absl::GetFlag(FLAGS_host);
    http.port = absl::GetFlag(FLAGS_http_port);
    http.request_timeout =
        absl::Seconds(absl::GetFlag(FLAGS_http_request_timeout_seconds));
    http.write_timeout =
        absl::Seconds(absl::GetFlag(FLAGS_http_write_timeout_seconds));
    http.keepalive_timeout =
        absl::Seconds(absl::GetFlag(FLAGS_http_keepalive_timeout_seconds));
    http.max_requests_per_connection =
        absl::GetFlag(FLAGS_http_max_requests_per_connection);
    http.max_connections = absl::GetFlag(FLAGS_http_max_connections);
    http.max_event_streams = absl::GetFlag(FLAGS_http_max_event_streams);
    http.max_request_bytes = absl::GetFlag(FLAGS_http_max_request_bytes);
    http.max_uri_bytes = absl::GetFlag(FLAGS_http_max_uri_bytes);
    const std::string http_cert = absl::GetFlag(FLAGS_http_tls_cert_file);
    const std::string http_key = absl::GetFlag(FLAGS_http_tls_key_file);
    http.tls.cert_file = http_cert.empty() ? options.tls.cert_file : http_cert;
    http.tls.key_file = http_key.empty() ? options.tls.key_file : http_key;
    http.tls.client_ca_file = absl::GetFlag(FLAGS_http_tls_client_ca_file);
    http.tls.refresh_interval = options.tls.refresh_interval;
    http.plaintext = options.plaintext;
  }
  return app;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil without NDEBUG, which leaves absl's lock-order
  // (deadlock) detection on: every absl::Mutex acquisition, gRPC's own
  // included, is recorded in a process-wide graph. Release builds of Abseil
  // skip it; so does the server (4-7% of a tiny network's Train stream,
  // docs/benchmarks.md). The tests that host a server in process keep it on,
  // where it catches inversions.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(kUsage);
  // absl's --helpshort and --help=<substring> also start from these flags.
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = IsServerFlagFile;
  usage_config.contains_helpshort_flags = IsServerFlagFile;
  absl::SetFlagsUsageConfig(usage_config);
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-help") {
      PrintHelp();
      return 0;
    }
  }
  ApplyEnvironment();
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_hash_api_key)) return HashApiKey();
  // Before anything else starts: the guard may re-execute the process.
  const absl::StatusOr<satlab::engine::BlasCoreReport> blas =
      satlab::engine::GuardBlasCore(absl::GetFlag(FLAGS_blas_core_guard), argv);

  if (absl::Status s = satlab::server::ConfigureLogging(
          absl::GetFlag(FLAGS_log_format), absl::GetFlag(FLAGS_log_level));
      !s.ok()) {
    std::fprintf(stderr, "satlab-server: %s\n",
                 std::string(s.message()).c_str());
    return 2;
  }

  if (!blas.ok()) {
    spdlog::critical("cannot start: {}", blas.status().ToString());
    return 1;
  }
  satlab::engine::SetBlasCoreReport(*blas);
  if (const std::string kernels = absl::GetFlag(FLAGS_kernels);
      kernels != "auto") {
    const auto isa = satlab::engine::kernels::ParseIsa(kernels);
    const absl::Status set =
        isa.ok() ? satlab::engine::kernels::SetActiveIsa(*isa) : isa.status();
    if (!set.ok()) {
      spdlog::critical("cannot start: --kernels: {}",
                       std::string(set.message()));
      return 2;
    }
  }
  if (const std::string engine = absl::GetFlag(FLAGS_engine);
      engine == "native") {
    std::vector<std::string> dirs;
    if (std::string dir = absl::GetFlag(FLAGS_engine_dir); !dir.empty()) {
      dirs.push_back(std::move(dir));
    } else {
      char exe[4096];
      const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
      const std::string path(exe, n > 0 ? static_cast<size_t>(n) : 0);
      const std::string bin = path.substr(0, path.rfind('/'));
      dirs = {bin, bin + "/../lib/satlab"};
    }
    absl::Status loaded;
    for (const std::string& dir : dirs) {
      loaded = satlab::engine::UseNativeEngine(dir);
      if (loaded.code() != absl::StatusCode::kNotFound) break;
    }
    if (!loaded.ok()) {
      spdlog::critical("cannot start: --engine=native: {}",
                       std::string(loaded.message()));
      return 2;
    }
  } else if (engine != "portable") {
    spdlog::critical(
        "cannot start: --engine: expected portable or native, got \"{}\"",
        engine);
    return 2;
  }
  spdlog::info("network engine {}", satlab::engine::EngineName());
  spdlog::info("kernels: engine {}; BLAS core {}{} ({})",
               satlab::engine::kernels::Description(), blas->active,
               blas->forced ? absl::StrCat(", forced over ", blas->detected)
                            : std::string(),
               blas->note);

  // SIGTERM/SIGINT are caught by a handler, not blocked and sigwait()ed:
  // threads started before main (OpenBLAS's pool starts when the library
  // loads) do not inherit a mask set here, and a process-directed signal
  // may land on any of them. Whichever thread takes it, the handler only
  // writes the signal number to a pipe that main reads below.
  if (pipe(g_stop_pipe) != 0) {
    std::perror("satlab-server: pipe");
    return 1;
  }
  struct sigaction on_stop = {};
  on_stop.sa_handler = OnStopSignal;
  sigemptyset(&on_stop.sa_mask);
  on_stop.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &on_stop, nullptr);
  sigaction(SIGINT, &on_stop, nullptr);
  // SIGHUP reloads the TLS files (below), it does not stop the server.
  sigaction(SIGHUP, &on_stop, nullptr);

  satlab::server::AppOptions options = OptionsFromFlags();
  if (absl::Status s = AuthFromFlags(&options); !s.ok()) {
    spdlog::critical("cannot start: {}", s.ToString());
    return 2;
  }
  if (!options.server.service.auth.enabled()) {
    spdlog::warn(
        "authentication is off (no --api_keys_file, SATLAB_API_KEYS or "
        "--cert_tenants): every caller is an admin; meant for loopback "
        "development only");
  }
  auto app = satlab::server::App::Start(options);
  if (!app.ok()) {
    spdlog::critical("cannot start: {}", app.status().ToString());
    // 2 for a bad flag value, as for a malformed command line.
    return absl::IsInvalidArgument(app.status()) ? 2 : 1;
  }
  // Tests and scripts read the bound ports from these lines.
  std::printf("listening on %s\n", (*app)->grpc_address().c_str());
  std::fflush(stdout);
  spdlog::info(
      "satlab-server listening on {} ({} compute threads, {} BLAS threads "
      "per product; usable cores: {})",
      (*app)->grpc_address(), (*app)->server()->executor()->threads(),
      satlab::engine::BlasThreads(), (*app)->usable_cores().Describe());
  if (!options.server.store_url.empty()) {
    spdlog::info("replica {} (writer leases of {}s in the shared store)",
                 (*app)->server()->replica_id(),
                 absl::ToDoubleSeconds(options.server.lease_ttl));
  }
  if ((*app)->thread_plan().oversubscribed) {
    spdlog::warn(
        "compute_threads x blas_threads = {} x {} exceeds the {} usable "
        "cores: concurrent large products will slow each other down",
        (*app)->thread_plan().compute_threads,
        (*app)->thread_plan().blas_threads, (*app)->usable_cores().cores);
  }
  if (options.server.tls.enabled()) {
    spdlog::info("gRPC port serves TLS{} (files re-read every {} s)",
                 options.server.tls.client_ca_file.empty()
                     ? ""
                     : " and requires client certificates (mutual TLS)",
                 absl::ToDoubleSeconds(options.server.tls.refresh_interval));
  } else {
    spdlog::warn("gRPC port serves plaintext{}",
                 options.server.plaintext ? " (--plaintext)" : " on loopback");
  }
  if (!options.server.store_url.empty()) {
    spdlog::info(
        "networks are kept in the PostgreSQL store {} (durable, "
        "shared; --store, which wins over --data_dir)",
        satlab::store::DescribePostgresUrl(options.server.store_url));
  } else if (options.server.data_dir.empty()) {
    spdlog::warn(
        "networks are kept in memory only (--data_dir is empty): a restart "
        "loses them");
  } else {
    spdlog::info("networks are kept in {}/satlab.db (durable; --data_dir)",
                 options.server.data_dir);
  }
  if (options.http.has_value()) {
    std::printf("http listening on %s:%d\n", options.http->host.c_str(),
                (*app)->http_port());
    std::fflush(stdout);
    spdlog::info("metrics and dashboard on {}://{}:{}/",
                 options.http->tls.enabled() ? "https" : "http",
                 options.http->host, (*app)->http_port());
  }

  int signal_number = 0;
  for (;;) {
    if (read(g_stop_pipe[0], &signal_number, sizeof(signal_number)) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (signal_number != SIGHUP) break;
    const absl::Status reloaded = (*app)->ReloadTls();
    if (reloaded.ok()) {
      spdlog::info(
          "SIGHUP: TLS files checked; changed ones are served on the HTTP "
          "port now, on the gRPC port within "
          "--tls_refresh_interval_seconds");
    } else {
      spdlog::error("SIGHUP: TLS files not reloaded, previous kept: {}",
                    reloaded.ToString());
    }
  }
  spdlog::info("received {}, draining (grace {} s)", strsignal(signal_number),
               absl::ToDoubleSeconds(options.shutdown_grace));
  (*app)->Shutdown();
  spdlog::info("stopped");
  return 0;
}
