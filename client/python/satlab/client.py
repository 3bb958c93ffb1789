"""satlab.Client: a thin, numpy-first wrapper over the generated stubs.

Tensors go in as array-likes and come back as numpy arrays; everything else
is the generated protobuf message, so every field documented in
proto/satlab/v1 is at hand. Errors are grpc.RpcError with the server's code
and message (INVALID_ARGUMENT names the offending field).
"""

import collections
import dataclasses
import json
import os
import threading
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

from satlab._std import health_pb2, health_pb2_grpc
from satlab.tensor import from_tensor, to_tensor
from satlab.v1 import experiment_pb2, network_pb2, tensor_pb2
from satlab.v1 import training_service_pb2 as pb
from satlab.v1 import training_service_pb2_grpc as pb_grpc

SERVICE_NAME = "satlab.v1.TrainingService"

#: A network: its name ("networks/x"), its bare id ("x") or the Network message.
NetworkRef = Union[str, network_pb2.Network]
#: Anything numpy.asarray accepts: ndarray, nested lists, scalars.
ArrayLike = Any
#: An enum value by name ("sigmoid", "SIGMOID", "ACTIVATION_SIGMOID") or number.
EnumLike = Union[str, int]
#: (W [fan_in, units], b [units]) of one layer.
LayerParams = Tuple[ArrayLike, ArrayLike]

# The server's receive limit is configurable; allow large replies by default.
# Calls that change nothing are retried by gRPC itself on UNAVAILABLE: behind
# a load balancer a call may reach a replica that just died (nginx answers
# 502, reported as UNAVAILABLE) and the next attempt reaches another. The
# same policy as the C++ client's; mutations are never retried here.
_READ_RETRY_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "satlab.v1.TrainingService", "method": m} for m in (
        "GetNetwork", "ListNetworks", "GetParameters", "Forward", "ComputeGradients",
        "Evaluate", "GetExperiment", "ListExperiments")],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
}]})

_DEFAULT_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.service_config", _READ_RETRY_CONFIG),
]


def _enum(enum_type: Any, prefix: str, value: EnumLike) -> int:
    """'sigmoid' / 'SIGMOID' / 'ACTIVATION_SIGMOID' / 2 -> 2."""
    if isinstance(value, int):
        return value
    name = str(value).upper()
    if not name.startswith(prefix):
        name = prefix + name
    try:
        return enum_type.Value(name)
    except ValueError:
        choices = [n[len(prefix):].lower() for n in enum_type.keys()
                   if not n.endswith("UNSPECIFIED")]
        raise ValueError(f"{prefix.rstrip('_').lower()}: unknown {value!r}; one of {choices}") from None


def activation(value: EnumLike) -> int:
    """The Activation enum number of "sigmoid", "relu", ... (or a number)."""
    return _enum(network_pb2.Activation, "ACTIVATION_", value)


def loss(value: EnumLike) -> int:
    """The Loss enum number of "mse", "bce", "cce" (or a number)."""
    return _enum(network_pb2.Loss, "LOSS_", value)


def sgd(learning_rate: float, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0) -> network_pb2.Optimizer:
    """An Optimizer message for SGD (PyTorch's convention)."""
    return network_pb2.Optimizer(sgd=network_pb2.Sgd(
        learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
        weight_decay=weight_decay))


def adam(learning_rate: float, beta1: float = 0.0, beta2: float = 0.0, epsilon: float = 0.0,
         weight_decay: float = 0.0) -> network_pb2.Optimizer:
    """An Optimizer message for Adam (0 means the server's default)."""
    return network_pb2.Optimizer(adam=network_pb2.Adam(
        learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
        weight_decay=weight_decay))


def _layer_parameters(weights: ArrayLike, biases: ArrayLike, dtype=None) -> network_pb2.LayerParameters:
    p = network_pb2.LayerParameters()
    to_tensor(np.atleast_2d(weights), dtype, out=p.weights)
    to_tensor(np.atleast_1d(biases), dtype, out=p.biases)
    return p


def _minibatch(msg, inputs, targets, dtype=None):
    to_tensor(np.atleast_2d(inputs), dtype, out=msg.inputs)
    to_tensor(np.atleast_2d(targets), dtype, out=msg.targets)
    return msg


# Minibatches per Train message by default: a stream of tiny steps is then
# not bound by one message per step (docs/benchmarks.md, "Many small steps
# per message").
BATCHES_PER_MESSAGE = 32


def _packed_request(pack: List[tensor_pb2.Minibatch]) -> pb.TrainRequest:
    """A TrainRequest carrying `pack`: one minibatch as `batch` (what servers
    before packing read), several as `batches`."""
    req = pb.TrainRequest()
    if len(pack) == 1:
        req.batch.CopyFrom(pack[0])
    else:
        req.batches.extend(pack)
    return req


def _name(network: NetworkRef) -> str:
    """Accepts 'networks/x', 'x' or a Network message."""
    if isinstance(network, network_pb2.Network):
        return network.name
    network = str(network)
    return network if network.startswith("networks/") else "networks/" + network


@dataclasses.dataclass
class Gradients:
    """Loss and gradients of one minibatch under one loss (numpy arrays)."""
    loss: str                                  # e.g. "mse"
    loss_value: float                          # mean loss over the batch
    layers: List[Tuple[np.ndarray, np.ndarray]]  # (dC/dW [fan_in, units], dC/db [units])
    output_delta: np.ndarray                   # dC_x/dz at the output, [batch, outputs]
    saturation: network_pb2.SaturationStats

    @classmethod
    def from_proto(cls, g: pb.Gradients) -> "Gradients":
        """Converts a satlab.v1.Gradients message."""
        return cls(
            loss=network_pb2.Loss.Name(g.loss)[len("LOSS_"):].lower(),
            loss_value=g.loss_value,
            layers=[(from_tensor(l.weights), from_tensor(l.biases)) for l in g.layers],
            output_delta=from_tensor(g.output_delta),
            saturation=g.saturation)


def tls_credentials(ca_file: Optional[str] = None, cert_file: Optional[str] = None,
                    key_file: Optional[str] = None) -> grpc.ChannelCredentials:
    """grpc.ssl_channel_credentials from PEM files: the CA the server's
    certificate must chain to (None: the system roots) and, for mutual TLS,
    the client certificate and its key (both or neither)."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("tls_cert_file and tls_key_file: expected both (mutual TLS) or neither")

    def read(path: Optional[str]) -> Optional[bytes]:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(root_certificates=read(ca_file),
                                        private_key=read(key_file),
                                        certificate_chain=read(cert_file))


class _BearerInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                         grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <key>` to every call's metadata (works on
    plaintext channels too, where gRPC refuses call credentials)."""

    def __init__(self, api_key: str) -> None:
        self._metadata = ("authorization", "Bearer " + api_key)

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or []) + [self._metadata]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class Client:
    """A connection to one satlab server.

    target: "host:port". credentials: grpc.ChannelCredentials for TLS, or None
    for plaintext (or TLS from the tls_* arguments). timeout: default
    deadline in seconds of unary calls.

    TLS: tls=True (implied by any tls_* file) verifies the server against
    tls_ca_file (PEM; None: the system roots); tls_cert_file + tls_key_file
    present a client certificate (mutual TLS); tls_server_name is the name
    the server certificate must carry when it is not the target's host.
    api_key (default: $SATLAB_API_KEY) is sent as `authorization: Bearer`
    metadata on every call and stream.
    """

    def __init__(self, target: str, credentials: Optional[grpc.ChannelCredentials] = None,
                 timeout: float = 30.0, options: Optional[Sequence[Tuple[str, Any]]] = None,
                 *, tls: bool = False, tls_ca_file: Optional[str] = None,
                 tls_cert_file: Optional[str] = None, tls_key_file: Optional[str] = None,
                 tls_server_name: Optional[str] = None,
                 api_key: Optional[str] = None) -> None:
        opts = list(_DEFAULT_OPTIONS) + list(options or [])
        if tls_server_name:
            opts.append(("grpc.ssl_target_name_override", tls_server_name))
        if credentials is None and (tls or tls_ca_file or tls_cert_file or tls_key_file):
            credentials = tls_credentials(tls_ca_file, tls_cert_file, tls_key_file)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=opts)
        if api_key is None:
            api_key = os.environ.get("SATLAB_API_KEY") or None
        channel = self._channel
        if api_key:
            channel = grpc.intercept_channel(channel, _BearerInterceptor(api_key))
        self.stub = pb_grpc.TrainingServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)
        self.timeout = timeout

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        """Closes the channel; calls in flight end with CANCELLED."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected; raises grpc.FutureTimeoutError."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def health(self, service: str = SERVICE_NAME, timeout: float = 5.0) -> str:
        """grpc.health.v1 Check: 'SERVING', 'NOT_SERVING', ..."""
        r = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    # -- resources -----------------------------------------------------------
    def create_network(self, input_size: int,
                       layers: Sequence[Union[Tuple[int, EnumLike], network_pb2.LayerSpec]],
                       loss: EnumLike = "mse", *, network_id: str = "",
                       init: EnumLike = "uniform_fan_in", seed: int = 0,
                       parameters: Optional[Sequence[LayerParams]] = None,
                       optimizer: Optional[network_pb2.Optimizer] = None, dtype: EnumLike = "float64",
                       saturation_threshold: float = 0.0) -> network_pb2.Network:
        """Creates an MLP and returns the Network message.

        layers: [(units, activation), ...] (activation as "sigmoid", "relu", ...),
          or LayerSpec messages.
        parameters: [(W [fan_in, units], b [units]), ...] for explicit initial
          parameters (sets init="explicit").
        optimizer: sgd(...)/adam(...); None means the server default (SGD 0.1).
        """
        spec = network_pb2.NetworkSpec(input_size=input_size, loss=_enum(network_pb2.Loss, "LOSS_", loss),
                                       dtype=_enum(network_pb2.DType, "DTYPE_", dtype),
                                       saturation_threshold=saturation_threshold)
        for layer in layers:
            if isinstance(layer, network_pb2.LayerSpec):
                spec.layers.append(layer)
            else:
                units, act = layer
                spec.layers.add(units=units, activation=activation(act))
        if parameters is not None:
            init = "explicit"
            for w, b in parameters:
                spec.init.parameters.append(_layer_parameters(w, b))
        spec.init.scheme = _enum(network_pb2.InitScheme, "INIT_SCHEME_", init)
        spec.init.seed = seed
        if optimizer is not None:
            spec.optimizer.CopyFrom(optimizer)
        req = pb.CreateNetworkRequest(network=network_pb2.Network(spec=spec), network_id=network_id)
        return self.stub.CreateNetwork(req, timeout=self.timeout).network

    def get_network(self, network: NetworkRef) -> network_pb2.Network:
        """The network's metadata (spec, step, samples seen, parameter count)."""
        return self.stub.GetNetwork(pb.GetNetworkRequest(name=_name(network)),
                                    timeout=self.timeout).network

    def list_networks(self, page_size: int = 0) -> Iterator[network_pb2.Network]:
        """Yields every network, fetching pages as needed."""
        token = ""
        while True:
            r = self.stub.ListNetworks(pb.ListNetworksRequest(page_size=page_size, page_token=token),
                                       timeout=self.timeout)
            yield from r.networks
            token = r.next_page_token
            if not token:
                return

    def delete_network(self, network: NetworkRef) -> None:
        """Deletes the network; an open Train stream on it ends ABORTED."""
        self.stub.DeleteNetwork(pb.DeleteNetworkRequest(name=_name(network)), timeout=self.timeout)

    def get_parameters(self, network: NetworkRef) -> List[Tuple[np.ndarray, np.ndarray]]:
        """[(W [fan_in, units], b [units]), ...] in the network's dtype."""
        r = self.stub.GetParameters(pb.GetParametersRequest(name=_name(network)), timeout=self.timeout)
        return [(from_tensor(l.weights), from_tensor(l.biases)) for l in r.layers]

    def set_parameters(self, network: NetworkRef, parameters: Sequence[LayerParams],
                       reset_optimizer_state: bool = False) -> network_pb2.Network:
        """Replaces all parameters: [(W, b), ...]; returns the Network."""
        req = pb.SetParametersRequest(name=_name(network), reset_optimizer_state=reset_optimizer_state)
        for w, b in parameters:
            req.layers.append(_layer_parameters(w, b))
        return self.stub.SetParameters(req, timeout=self.timeout).network

    # -- compute -------------------------------------------------------------
    def forward(self, network: NetworkRef, inputs: ArrayLike, include_layers: bool = False
                ) -> Union[np.ndarray, Tuple[np.ndarray, List[Tuple[np.ndarray, np.ndarray]]]]:
        """Outputs [batch, outputs]; with include_layers, (outputs, [(z, a), ...])."""
        req = pb.ForwardRequest(name=_name(network), include_layers=include_layers)
        to_tensor(np.atleast_2d(inputs), out=req.inputs)
        r = self.stub.Forward(req, timeout=self.timeout)
        out = from_tensor(r.outputs)
        if not include_layers:
            return out
        return out, [(from_tensor(l.z), from_tensor(l.a)) for l in r.layers]

    def compute_gradients(self, network: NetworkRef, inputs: ArrayLike, targets: ArrayLike,
                          counterfactual_losses: Sequence[EnumLike] = ()
                          ) -> Tuple["Gradients", Dict[str, "Gradients"]]:
        """Gradients under the network's loss, and a dict loss-name -> Gradients
        of the counterfactual losses: (Gradients, {"bce": Gradients, ...})."""
        req = pb.ComputeGradientsRequest(name=_name(network))
        _minibatch(req.batch, inputs, targets)
        req.counterfactual_losses.extend(loss(l) for l in counterfactual_losses)
        r = self.stub.ComputeGradients(req, timeout=self.timeout)
        other = [Gradients.from_proto(g) for g in r.counterfactuals]
        return Gradients.from_proto(r.gradients), {g.loss: g for g in other}

    def train_step(self, network: NetworkRef, inputs: ArrayLike, targets: ArrayLike) -> network_pb2.StepResult:
        """One optimizer step on one minibatch; the StepResult (loss before
        the step, saturation, the new step count)."""
        req = pb.TrainStepRequest(name=_name(network))
        _minibatch(req.batch, inputs, targets)
        return self.stub.TrainStep(req, timeout=self.timeout).result

    def train(self, network: NetworkRef, batches: Iterable[Tuple[ArrayLike, ArrayLike]],
              report_every: int = 1, timeout: Optional[float] = None,
              batches_per_message: int = BATCHES_PER_MESSAGE,
              report_losses: bool = False) -> Iterator[pb.TrainResponse]:
        """Streams (inputs, targets) pairs through Train; yields TrainResponses
        as the server reports them (every `report_every` steps and the last).

        Up to `batches_per_message` minibatches travel in one message (the
        server applies them as that many steps, bitwise as if sent one by
        one); 1 sends each alone, as servers before packing expect. With
        `report_losses`, each response also lists the loss of every step since
        the previous one (TrainResponse.losses)."""
        if batches_per_message < 1:
            raise ValueError(f"batches_per_message: expected at least 1, got {batches_per_message}")
        name = _name(network)

        def requests():
            yield pb.TrainRequest(name=name, report_every=report_every,
                                  report_losses=report_losses)
            pack: List[tensor_pb2.Minibatch] = []
            for x, y in batches:
                mb = tensor_pb2.Minibatch()
                _minibatch(mb, x, y)
                pack.append(mb)
                if len(pack) == batches_per_message:
                    yield _packed_request(pack)
                    pack = []
            if pack:
                yield _packed_request(pack)

        return self.stub.Train(requests(), timeout=timeout)

    def train_resumable(self, network: NetworkRef, batches: Iterable[Tuple[ArrayLike, ArrayLike]],
                        report_every: int = 1, commit_every_steps: int = 0,
                        max_resumes: int = 10, initial_backoff: float = 0.05,
                        max_backoff: float = 2.0, max_buffered: int = 4096,
                        timeout: Optional[float] = None,
                        batches_per_message: int = BATCHES_PER_MESSAGE) -> Iterator[pb.TrainResponse]:
        """Train that survives a dropped connection or a server restart, like
        the C++ client's TrainSession.

        Minibatch n (from 0) becomes step start + n + 1, where start is the
        network's step when the call begins. Every minibatch is kept until the
        server reports it durable (StepResult.durable_step); when the stream
        fails with UNAVAILABLE (or ABORTED while the server, or another
        replica's lease, still holds the previous stream; or INTERNAL
        "RST_STREAM" from a gRPC proxy whose replica died), the helper waits
        with backoff, reads the network's
        step, opens a stream that must start exactly there (expected_step) and
        resends the rest, so the network ends as an uninterrupted run would,
        bit for bit. Yields TrainResponses in order, at most once per step
        (every `report_every` steps and the last; a response a failure cut
        off for a step the server had already committed is not sent again). Raises grpc.RpcError when the
        failure is not retryable or max_resumes failures come in a row.
        Minibatches travel up to `batches_per_message` per message, as in
        train(); a resume resends from the network's step whatever the packing.
        """
        if max_buffered < 2:
            raise ValueError(f"max_buffered: expected at least 2, got {max_buffered}")
        if batches_per_message < 1:
            raise ValueError(f"batches_per_message: expected at least 1, got {batches_per_message}")
        name = _name(network)
        start = self.get_network(name).step
        half = max_buffered // 2
        commit_every = min(commit_every_steps, half) if commit_every_steps > 0 else half
        report_every = max(1, min(report_every, half))
        deadline = None if timeout is None else time.monotonic() + timeout
        source = iter(batches)
        lock = threading.Condition()
        # Minibatches of steps start + first + 1 ... not yet durable.
        state = {"buffer": collections.deque(), "first": 0, "written": 0,
                 "exhausted": False, "durable": 0, "delivered": start}

        def trim() -> None:
            while state["buffer"] and start + state["first"] + 1 <= state["durable"]:
                state["buffer"].popleft()
                state["first"] += 1

        def requests(server_step: int):
            yield pb.TrainRequest(name=name, report_every=report_every,
                                  commit_every_steps=commit_every, expected_step=server_step)
            i = server_step - start
            while True:
                pack: List[tensor_pb2.Minibatch] = []
                with lock:
                    while len(pack) < batches_per_message:
                        j = i + len(pack)
                        if j < state["written"]:
                            pack.append(state["buffer"][j - state["first"]])
                        elif state["exhausted"]:
                            break
                        elif len(state["buffer"]) >= max_buffered:
                            if pack:  # send what there is; the server drains the buffer
                                break
                            lock.wait()
                        else:
                            try:
                                x, y = next(source)
                            except StopIteration:
                                state["exhausted"] = True
                                break
                            mb = tensor_pb2.Minibatch()
                            _minibatch(mb, x, y)
                            state["buffer"].append(mb)
                            state["written"] += 1
                if not pack:
                    return
                yield _packed_request(pack)
                i += len(pack)

        server_step, failures, backoff, resuming = start, 0, initial_backoff, False
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                for response in self.stub.Train(requests(server_step), timeout=left):
                    with lock:
                        server_step = max(server_step, response.result.step)
                        state["durable"] = max(state["durable"], response.result.durable_step)
                        trim()
                        lock.notify_all()
                        fresh = response.result.step > state["delivered"]
                        if fresh:
                            state["delivered"] = response.result.step
                    failures, backoff = 0, initial_backoff
                    if fresh:
                        yield response
                with lock:
                    expected = start + state["written"]
                if server_step != expected:
                    # A server that predates `batches` ignores them and ends OK.
                    raise RuntimeError(
                        f"{name} is at step {server_step} after the stream, expected {expected}: "
                        "the server skipped minibatches (one that predates several minibatches "
                        "per message ignores them: pass batches_per_message=1)")
                return
            except grpc.RpcError as err:
                error: grpc.RpcError = err
            while True:
                code = error.code()
                # A gRPC proxy (nginx) whose replica died mid-stream resets
                # the stream: INTERNAL "RST_STREAM", the transport failing.
                retry = code == grpc.StatusCode.UNAVAILABLE or \
                    (code == grpc.StatusCode.INTERNAL and
                     "RST_STREAM" in (error.details() or "")) or \
                    (code == grpc.StatusCode.ABORTED and (resuming or failures > 0))
                failures += 1
                if not retry or failures > max_resumes or \
                        (deadline is not None and time.monotonic() >= deadline):
                    raise error
                time.sleep(backoff)
                backoff = min(2 * backoff, max_backoff)
                try:
                    net = self.get_network(name)
                except grpc.RpcError as again:
                    error = again
                    continue
                break
            resuming = True
            server_step = net.step
            with lock:
                state["durable"] = max(state["durable"], net.durable_step)
                trim()
                if server_step - start < state["first"] or server_step - start > state["written"]:
                    raise RuntimeError(
                        f"{name} is at step {server_step}, but only the minibatches for steps "
                        f"{start + state['first'] + 1} to {start + state['written']} are kept: "
                        "another writer changed it, or the server lost state it reported durable")

    def train_steps(self, network: NetworkRef, batches: Iterable[Tuple[ArrayLike, ArrayLike]],
                    request_id: str = "") -> pb.TrainStepResponse:
        """One optimizer step per (inputs, targets) pair, in order, in one
        TrainStep call: all applied or none (bitwise as that many train_step
        calls). The response has the last StepResult, steps_applied and every
        step's loss (losses). `request_id` makes a retry apply once."""
        req = pb.TrainStepRequest(name=_name(network), request_id=request_id)
        for x, y in batches:
            _minibatch(req.batches.add(), x, y)
        return self.stub.TrainStep(req, timeout=self.timeout)

    def evaluate(self, network: NetworkRef, inputs: ArrayLike, targets: ArrayLike) -> pb.EvaluateResponse:
        """Loss, accuracy and saturation over a dataset, without a step."""
        req = pb.EvaluateRequest(name=_name(network))
        _minibatch(req.data, inputs, targets)
        return self.stub.Evaluate(req, timeout=self.timeout)

    def watch_metrics(self, network: Optional[NetworkRef] = None, start_step: int = 0,
                      timeout: Optional[float] = None) -> Iterator[pb.WatchMetricsResponse]:
        """Metric events of one network (or all when None): replay, then live.
        Cancel the returned iterator (.cancel()) to stop."""
        name = "" if network is None else _name(network)
        return self.stub.WatchMetrics(pb.WatchMetricsRequest(name=name, start_step=start_step),
                                      timeout=timeout)

    # -- export / import (docs/storage.md, "Export files") --------------------
    _TRANSFER_CHUNK = 1 << 20

    def export_network(self, network: NetworkRef, path: str, timeout: Optional[float] = None) -> int:
        """Writes the network's export file (spec, parameters, optimizer state,
        step; a consistent snapshot) to `path`, chunk by chunk, through
        `path`.tmp renamed when complete. Returns the file's size."""
        tmp = path + ".tmp"
        done = 0
        total = -1
        try:
            with open(tmp, "wb") as out:
                for chunk in self.stub.ExportNetwork(pb.ExportNetworkRequest(name=_name(network)),
                                                     timeout=timeout):
                    if chunk.offset != done:
                        raise RuntimeError(f"ExportNetwork: chunk at offset {chunk.offset}, expected {done}")
                    total = chunk.total_bytes
                    out.write(chunk.data)
                    done += len(chunk.data)
            if total < 0 or done != total:
                raise RuntimeError(f"ExportNetwork: the stream ended after {done} of {total} bytes")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return done

    def import_network(self, path: str, network_id: str = "",
                       timeout: Optional[float] = None) -> network_pb2.Network:
        """Creates networks/{network_id} (empty: server-assigned) from an export
        file, streamed in 1 MiB chunks. All or nothing."""
        total = os.path.getsize(path)

        def requests():
            with open(path, "rb") as f:
                first = True
                while True:
                    data = f.read(self._TRANSFER_CHUNK)
                    if first:
                        yield pb.ImportNetworkRequest(network_id=network_id, total_bytes=total, data=data)
                        first = False
                    elif data:
                        yield pb.ImportNetworkRequest(data=data)
                    if not data:
                        return

        return self.stub.ImportNetwork(requests(), timeout=timeout).network
    def run_experiment(self, spec: Optional[experiment_pb2.ExperimentSpec],
                       timeout: Optional[float] = None,
                       experiment_id: str = "") -> Iterator[pb.RunExperimentResponse]:
        """Streams EpochMetrics messages, then the ExperimentSummary; each
        message names the run (`experiment`, `experiments/{id}`). With the
        experiment_id of a finished experiment (spec None or the same), the
        server streams the kept run again instead of training."""
        return self.stub.RunExperiment(pb.RunExperimentRequest(spec=spec, experiment_id=experiment_id),
                                       timeout=timeout)

    # -- experiments as resources (`experiments/{id}`) ----------------------
    def get_experiment(self, experiment: str) -> experiment_pb2.Experiment:
        """A kept experiment (`experiments/{id}` or the id): spec, state,
        curves and summary."""
        return self.stub.GetExperiment(pb.GetExperimentRequest(name=_experiment_name(experiment)),
                                       timeout=self.timeout).experiment

    def list_experiments(self, page_size: int = 0) -> Iterator[experiment_pb2.Experiment]:
        """Yields every kept experiment (without curves), fetching pages as needed."""
        token = ""
        while True:
            r = self.stub.ListExperiments(pb.ListExperimentsRequest(page_size=page_size, page_token=token),
                                          timeout=self.timeout)
            yield from r.experiments
            token = r.next_page_token
            if not token:
                return

    def delete_experiment(self, experiment: str) -> None:
        """Deletes a finished experiment (FAILED_PRECONDITION while it runs)."""
        self.stub.DeleteExperiment(pb.DeleteExperimentRequest(name=_experiment_name(experiment)),
                                   timeout=self.timeout)


def _experiment_name(experiment: str) -> str:
    return experiment if experiment.startswith("experiments/") else f"experiments/{experiment}"

