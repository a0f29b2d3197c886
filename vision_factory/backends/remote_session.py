"""Sessions on an inference server over the Open Inference Protocol (KServe v2: Triton, KServe, OpenVINO Model
Server, MLServer), through tritonclient. The node keeps its own pre- and post-processing and sends only the
network's input tensors; the node's own export of the network (its metadata: class names, sizes) is what the
served model is checked against when the session opens.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from vision_factory.backends.session import BackendError
from vision_factory.model_repository import Signature, TensorSpec, name_problem, onnx_signature, server_model_name

# url scheme -> (protocol, TLS); a url without a scheme is gRPC, the protocol's default.
SCHEMES = {"grpc": ("grpc", False), "grpcs": ("grpc", True), "http": ("http", False), "https": ("http", True)}
BACKOFF_S, MAX_BACKOFF_S = 0.1, 1.0  # first wait before a retry, doubled per retry up to the most
WINDOW_S = 10.0  # the span of the round-trip and failure figures reported in diagnostics
# gRPC retries a lost connection no slower than this (its default backs off to 2 minutes): a restarted
# server is used again within a second.
RECONNECT_MS = 1000
# Status codes of requests that fail the same way however often they are sent.
_FINAL_GRPC = {"StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND", "StatusCode.UNIMPLEMENTED",
               "StatusCode.PERMISSION_DENIED", "StatusCode.UNAUTHENTICATED", "StatusCode.FAILED_PRECONDITION"}
_FINAL_HTTP = {"400", "401", "403", "404"}


@dataclass(frozen=True)
class ServerAddress:
    """Where the server is: protocol grpc or http, with or without TLS, at host:port."""

    protocol: str
    tls: bool
    host_port: str

    def __str__(self) -> str:
        return f"{self.protocol}{'s' if self.tls else ''}://{self.host_port}"


def parse_server_url(text: str) -> ServerAddress:
    """"grpc://host:8001", "http://host:8000", grpcs / https for TLS, or "host:port" (gRPC); ValueError if not."""
    scheme, separator, rest = text.strip().partition("://")
    if not separator:
        scheme, rest = "grpc", scheme
    if scheme not in SCHEMES:
        raise ValueError(f"'{text}' has scheme '{scheme}'; use one of {', '.join(f'{s}://' for s in SCHEMES)}")
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit() or "/" in rest.rstrip("/"):
        raise ValueError(f"'{text}' is not a server address such as grpc://localhost:8001")
    return ServerAddress(*SCHEMES[scheme], f"{host}:{port}")


def auth_headers(variable: str) -> dict[str, str]:
    """The header the environment variable `variable` holds ("Name: value"), none for ''. From the environment,
    not a parameter: any node on the ROS graph can read parameters."""
    if not variable:
        return {}
    text = os.environ.get(variable)
    if text is None:
        raise ValueError(f"environment variable {variable} is not set (it should hold 'Header-Name: value')")
    name, separator, value = text.partition(":")
    if not separator or not name.strip() or not value.strip():
        raise ValueError(f"environment variable {variable} does not hold 'Header-Name: value'")
    return {name.strip().lower(): value.strip()}  # gRPC metadata keys are lower case


def option_problem(name: str, value: Any) -> str:
    """'' if a setting can work, else why not."""
    try:
        if name == "server_url":
            parse_server_url(str(value))
        elif name == "auth_header_env":
            auth_headers(str(value))
    except ValueError as e:
        return str(e)
    if name == "model_name" and value:
        return name_problem(str(value))
    if name == "tls_ca_file" and value and not os.path.isfile(str(value)):
        return f"'{value}' is not a file"
    return ""


def runtime_fields(options: Mapping[str, Any]) -> dict[str, str]:
    """Nothing runs here: the artifact is the ONNX file the server's copy is checked against."""
    return {}


def _describe(error: Exception) -> str:
    """One line for an error from tritonclient, gRPC or the socket underneath."""
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException):
        status = error.status() or ""
        text = (error.message() or "").splitlines()[0] if error.message() else ""
        return f"{status.replace('StatusCode.', '')} {text}".strip()
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _final(error: Exception) -> bool:
    """Whether retrying `error` cannot help (a refused request rather than an unreachable server)."""
    from tritonclient.utils import InferenceServerException

    return isinstance(error, InferenceServerException) and str(error.status()) in _FINAL_GRPC | _FINAL_HTTP


class _Calls:
    """Round trips and failures of the last WINDOW_S, and the totals, for diagnostics (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._round_trips: deque[tuple[float, float]] = deque()
        self._failures: deque[float] = deque()
        self.requests = self.failed = 0
        self.last_failure = ""

    def answered(self, seconds: float) -> None:
        with self._lock:
            self.requests += 1
            self._round_trips.append((time.monotonic(), seconds))
            self._trim()

    def failure(self, why: str) -> None:
        with self._lock:
            self.requests += 1
            self.failed += 1
            self.last_failure = why
            self._failures.append(time.monotonic())
            self._trim()

    def recent(self) -> tuple[list[float], int]:
        """Round trips (s) and the number of failures of the last WINDOW_S."""
        with self._lock:
            self._trim()
            return [seconds for _, seconds in self._round_trips], len(self._failures)

    def _trim(self) -> None:
        since = time.monotonic() - WINDOW_S
        while self._round_trips and self._round_trips[0][0] < since:
            self._round_trips.popleft()
        while self._failures and self._failures[0] < since:
            self._failures.popleft()


class RemoteSession:
    """The network `artifact` served as `model_name` by the server at `server_url`; run() sends a request per
    frame, retried with backoff when the server cannot be reached.

    Opening fails with one line (BackendError) when the server is not there, does not serve the model (naming
    what it serves), or serves another network than the node's export.
    """

    def __init__(self, artifact: Any, options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)):
        try:
            self.server = parse_server_url(str(options["server_url"]))
            self._headers = auth_headers(str(options.get("auth_header_env", "")))
        except ValueError as e:
            raise BackendError(str(e)) from None
        self.model = server_model_name(artifact.name, str(options.get("model_name", "")))
        self.version = str(options.get("model_version", ""))
        self._connect_s = float(options.get("connect_timeout_s", 5.0))
        self._request_s = float(options.get("request_timeout_s", 10.0))
        self._retries = int(options.get("retries", 2))
        self._ca_file = str(options.get("tls_ca_file", "")) or None
        self._local = threading.local()  # the HTTP client is gevent's: one per thread that calls
        self._grpc = self._grpc_client() if self.server.protocol == "grpc" else None
        self.calls = _Calls()
        expected = onnx_signature(artifact.path)
        served = self._served_signature()
        self._check(expected, served)
        first = expected.inputs[0]
        self.input_name, self.input_shape = first.name, first.shape
        self._outputs = [output.name for output in expected.outputs]
        version = f" version {self.version}" if self.version else ""
        self.active = f"{self.server} model {self.model}{version}"
        logger.info(f"serving {artifact.path.name} from the inference server: {self.active}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One inference on the server: outputs in the network's order. Retries a server that cannot be reached
        `retries` times (waits of BACKOFF_S, doubled each time); then BackendError saying why."""
        for attempt in range(self._retries + 1):
            started = time.monotonic()
            try:
                result = self._infer(inputs)
            except Exception as e:  # tritonclient, gRPC and socket errors alike: each is counted
                why = _describe(e)
                self.calls.failure(why)
                if attempt == self._retries or _final(e):
                    raise BackendError(f"the inference server {self.server} failed (model {self.model}): {why}") \
                        from None
                time.sleep(min(BACKOFF_S * 2 ** attempt, MAX_BACKOFF_S))
            else:
                self.calls.answered(time.monotonic() - started)
                return [result.as_numpy(name) for name in self._outputs]
        raise AssertionError("unreachable")  # the loop returns or raises

    def report(self) -> tuple[str, dict[str, str]]:
        """(a warning, or '' while every request of the last WINDOW_S was answered; the server's figures) for
        the node's diagnostics."""
        round_trips, failures = self.calls.recent()
        warning = ""
        if failures:
            warning = (f"{failures} requests to the inference server failed in the last {WINDOW_S:.0f} s: "
                       f"{self.calls.last_failure}")
        median = f"{np.median(round_trips) * 1e3:.1f}" if round_trips else ""
        return warning, {"server": str(self.server), "server_model": self.model,
                         "server_round_trip_p50_ms": median, "server_requests": str(self.calls.requests),
                         "server_failures": str(self.calls.failed), "server_last_failure": self.calls.last_failure}

    # --- the protocol, through tritonclient --------------------------------------------------------

    def _grpc_client(self) -> Any:
        import tritonclient.grpc as grpcclient

        largest = 2 ** 31 - 1  # images are larger than gRPC's default 4 MB message
        return grpcclient.InferenceServerClient(
            self.server.host_port, ssl=self.server.tls, root_certificates=self._ca_file,
            channel_args=[("grpc.max_send_message_length", largest), ("grpc.max_receive_message_length", largest),
                          ("grpc.initial_reconnect_backoff_ms", RECONNECT_MS // 10),
                          ("grpc.min_reconnect_backoff_ms", RECONNECT_MS // 10),
                          ("grpc.max_reconnect_backoff_ms", RECONNECT_MS)])

    def _client(self) -> Any:
        """A client of the server: gRPC's is shared by threads, HTTP's is made once per thread."""
        if self._grpc is not None:
            return self._grpc
        client = getattr(self._local, "client", None)
        if client is None:
            import tritonclient.http as httpclient

            ssl_options = {"ca_certs": self._ca_file} if self._ca_file else None
            client = self._local.client = httpclient.InferenceServerClient(
                self.server.host_port, ssl=self.server.tls, ssl_options=ssl_options,
                connection_timeout=self._connect_s, network_timeout=self._request_s)
        return client

    def _timeout(self, seconds: float) -> dict[str, float]:
        """gRPC takes a timeout per call; HTTP's were set on its client."""
        return {"client_timeout": seconds} if self.server.protocol == "grpc" else {}

    def _served_signature(self) -> Signature:
        """The served model's tensors, or BackendError saying why there are none."""
        client, timeout = self._client(), self._timeout(self._connect_s)
        try:
            client.is_server_live(headers=self._headers, **timeout)
        except Exception as e:
            raise BackendError(f"cannot reach the inference server at {self.server}: {_describe(e)}") from None
        try:
            metadata = client.get_model_metadata(self.model, self.version, headers=self._headers, **timeout)
            ready = client.is_model_ready(self.model, self.version, headers=self._headers, **timeout)
        except Exception as e:
            raise BackendError(f"the inference server at {self.server} does not serve model '{self.model}'"
                               f"{' version ' + self.version if self.version else ''} ({_describe(e)}); "
                               f"it serves: {self._served_models()}") from None
        if not ready:
            raise BackendError(f"model '{self.model}' on the inference server at {self.server} is not ready")
        if not isinstance(metadata, dict):  # gRPC answers a protobuf message, HTTP a dict
            from google.protobuf.json_format import MessageToDict

            metadata = MessageToDict(metadata, preserving_proto_field_name=True)

        def specs(key: str) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t.get("shape", ())))
                         for t in metadata.get(key, ()))

        return Signature(specs("inputs"), specs("outputs"))

    def _served_models(self) -> str:
        """What the server lists in its repository index (not every server offers one)."""
        try:
            index = self._client().get_model_repository_index(headers=self._headers,
                                                              **self._timeout(self._connect_s))
        except Exception as e:
            return f"(it does not list its models: {_describe(e)})"
        if not isinstance(index, list):
            from google.protobuf.json_format import MessageToDict

            index = MessageToDict(index).get("models", [])
        return ", ".join(f"{m['name']}{' version ' + m['version'] if m.get('version') else ''}"
                         f"{' (' + m['state'] + ')' if m.get('state') else ''}" for m in index) or "no models"

    def _check(self, expected: Signature, served: Signature) -> None:
        """BackendError unless the served model takes and gives the tensors of the node's export."""
        mine = {t.name: t for t in (*expected.inputs, *expected.outputs)}
        theirs = {t.name: t for t in (*served.inputs, *served.outputs)}
        differences = [f"{name}: {theirs.get(name, 'absent')} there, {spec} here" for name, spec in mine.items()
                       if name not in theirs or not spec.agrees_with(theirs[name])]
        if differences:
            raise BackendError(f"model '{self.model}' on the inference server at {self.server} is another network "
                               f"than this node's ({'; '.join(differences)}): serve the ONNX file `vision-factory "
                               f"export --repository` writes from the node's weights")

    def _infer(self, inputs: Mapping[str, np.ndarray]) -> Any:
        if self.server.protocol == "grpc":
            import tritonclient.grpc as protocol
        else:
            import tritonclient.http as protocol  # type: ignore[no-redef]
        from tritonclient.utils import np_to_triton_dtype

        # Over HTTP, tensors travel as JSON: the protocol's own form, which every server reads (Triton's
        # binary extension is not everywhere). gRPC sends raw bytes either way.
        binary = {} if self.server.protocol == "grpc" else {"binary_data": False}
        tensors = []
        for name, array in inputs.items():
            tensor = protocol.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array), **binary)
            tensors.append(tensor)
        outputs = [protocol.InferRequestedOutput(name, **binary) for name in self._outputs]
        return self._client().infer(self.model, tensors, model_version=self.version, outputs=outputs,
                                    headers=self._headers, **self._timeout(self._request_s))


def open_session(artifact: Any, options: Mapping[str, Any], logger: Any) -> RemoteSession:
    """The backend row's opener: a session on the server's copy of the artifact (artifacts.Artifact)."""
    return RemoteSession(artifact, options, logger)
