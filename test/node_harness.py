"""Running generated nodes as processes and talking to them as `ros2 param` / a camera would."""
from __future__ import annotations

import itertools
import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from vision_factory.manifest import load_manifest
from vision_factory.output_kinds import OutputKind
from vision_factory.ros import messages
from vision_factory.image_conversion import image_to_bgr
from vision_factory.recorded_images import BagMessage
from vision_factory.tools.bag_replay import ReplayProbe
from vision_factory.tools.bench.node_probe import discovery_failed
from vision_factory.tools.workspace import node_command, start_process, stop

_DOMAINS = itertools.count(os.getpid() % 25 * 4)
DISCOVERY_S = 30.0  # a running node publishes diagnostics every second: by then the probe hears it
READY_S = 120.0  # a first launch may export
SAFE_DOMAINS = 101  # ids 1..101: higher ones can collide with ephemeral ports (ROS 2 "About Domain ID")
_STOP_AFTER_CLOSE: dict[ReplayProbe, list[subprocess.Popen]] = {}  # nodes heard by a shared probe


@dataclass(frozen=True)
class Family:
    """What a probe hears from a model family's node: the topics of its output kind, and which of them
    carries the per-frame results of the family's test models."""

    kind: OutputKind
    results: str

    @property
    def topics(self) -> dict[str, type]:
        """Topic name under the node -> message class."""
        return {topic.name: topic.message_class() for topic in self.kind.topics}

    @property
    def latched(self) -> str | None:
        """The latched topic a ready node has published (None: a ready node says "running" in its
        diagnostics instead)."""
        return self.kind.latched.name if self.kind.latched else None


FAMILIES = {model: Family(load_manifest(model).output_kind, results) for model, results in (
    ("yolo", "detections"), ("rtmpose", "poses"), ("depth_anything", "inverse_depth_relative"),
    ("grounding_dino", "detections"), ("bytetrack", "detections"), ("sam", "masks"),
    ("florence2", "text"))}
assert all(family.kind.topic(family.results).per_frame for family in FAMILIES.values())


def package_of(family: str, backend: str) -> str:
    """The generated package's (and node's) name: <family>_<backend>, or the family's alone for a tracker."""
    return f"{family}_{backend}" if backend else family


def next_domain() -> int:
    """A ROS_DOMAIN_ID in the safe range that no other node of this run uses (within 101 tests)."""
    return 1 + next(_DOMAINS) % SAFE_DOMAINS


@contextmanager
def launched(workspace: tuple[Path, dict], backend: str, tmp_path: Path, managed: bool = False,
             family: str = "yolo", remaps: dict[str, str] | None = None, cameras: int = 0,
             probe: ReplayProbe | None = None, connected: Callable[[ReplayProbe], bool] = lambda probe: True,
             **overrides: Any) -> Iterator[tuple[subprocess.Popen, ReplayProbe, Path]]:
    """The generated <family>_<backend> node (a tracker: backend "") running as its own process, once its
    model is ready (managed: once its lifecycle services are up), and a probe on the same private ROS
    domain that hears its outputs and /diagnostics. `remaps`: the node's input (default: image_raw to
    /camera/image_raw; with `cameras` N: cam<i>/image_raw to /cam<i>/image_raw, and the probe hears every
    camera's outputs). `probe`: another launched node's, which then also hears this one (on its domain) and
    is closed by that node's launched(): one probe, one Fast DDS participant in the test process.
    `connected(probe)`: whether the ready node has found the other nodes it needs (e.g. from its
    diagnostics); like the probe's own discovery of the node, it is given one restart to come true."""
    ws, env = workspace
    shared = probe
    domain = shared.context.get_domain_id() if shared else next_domain()
    package = package_of(family, backend)
    prefixes = camera_prefixes(cameras)
    topics = {f"/{package}/{prefix}{name}": kind for prefix in prefixes
              for name, kind in FAMILIES[family].topics.items()}
    latched = FAMILIES[family].latched and f"{prefixes[0]}{FAMILIES[family].latched}"
    if backend:
        overrides.setdefault("cache_dir", str(tmp_path / "cache"))
    if cameras:
        overrides["cameras"] = cameras
        remaps = remaps or {f"{prefix}image_raw": f"/{prefix}image_raw" for prefix in prefixes}
    executable = f"{package}_managed" if managed else package
    command = node_command(ws, package, executable, overrides, remaps or {"image_raw": "/camera/image_raw"})
    log = tmp_path / f"{package}-{domain}.log"

    every_latched = tuple(f"/{package}/{prefix}{FAMILIES[family].latched}" for prefix in prefixes) if latched \
        else ()
    outputs = {**topics, "/diagnostics": DiagnosticArray}

    def start() -> tuple[subprocess.Popen, ReplayProbe]:
        # Appended: a node started again (below) keeps what its first start printed, e.g. that it exported.
        with open(log, "a") as out:
            process = start_process(command, {**env, "ROS_DOMAIN_ID": str(domain)}, stdout=out,
                                    stderr=subprocess.STDOUT)
        if shared:
            shared.listen(outputs, every_latched)
            return process, shared
        return process, ReplayProbe(outputs, domain_id=domain, latched=every_latched)

    def close(process: subprocess.Popen, probe: ReplayProbe) -> None:
        # The probe before its nodes: a node stopped while the probe's participant is still connected to it
        # over Fast DDS's TCP transport (LARGE_DATA) can hang in its participant's teardown (seen with
        # sam_onnx, 2 in 2). A shared probe's owner stops this node after closing it.
        if shared:
            _STOP_AFTER_CLOSE.setdefault(shared, []).append(process)
            return
        probe.close()
        for node in (process, *_STOP_AFTER_CLOSE.pop(probe, ())):
            stop(node)

    def node_ready(probe: ReplayProbe, timeout_s: float) -> bool:
        if managed:
            client = probe.node.create_client(GetState, f"/{package}/get_state")
            ready = client.wait_for_service(timeout_sec=timeout_s)
            probe.node.destroy_client(client)
            return ready
        if latched is None:
            return probe.spin_until(lambda: process.poll() is not None or any(
                status["state"] == "running" for status in diagnostics_of(probe, package)), timeout_s) \
                and process.poll() is None
        return probe.wait_for_message(f"/{package}/{latched}", timeout_s, alive=lambda: process.poll() is None)

    def discovered(probe: ReplayProbe) -> bool:
        return not discovery_failed(probe.node, package, bool(probe.outputs["/diagnostics"]))

    process, probe = start()
    try:
        ready = node_ready(probe, DISCOVERY_S)
        # A ready node is in the probe's graph within seconds; one that is not, or that is not ready and
        # not heard, is on the wrong side of a failed Fast DDS discovery (now and then with LARGE_DATA,
        # more often on a loaded machine): both start again, once. So does a node that has not found the
        # nodes it needs (measured: sam_onnx missed yolo_onnx's publisher in 3 of 8 launches here). A node
        # that runs but never announces itself still fails below.
        if process.poll() is None and not probe.spin_until(lambda: discovered(probe) and connected(probe),
                                                           20 if ready else 0):
            if shared:
                stop(process)
            else:
                close(process, probe)
            process, probe = start()
            ready = False
        if not ready:
            ready = node_ready(probe, READY_S - DISCOVERY_S)
        heard = len(probe.outputs["/diagnostics"])
        assert ready, f"node did not come up (the probe heard {heard} diagnostics messages):\n{log.read_text()}"
        yield process, probe, log
    finally:
        close(process, probe)


def camera_prefixes(cameras: int) -> list[str]:
    """The topic prefix of each camera of a node with `cameras` N ("" for a node of one camera)."""
    return [f"cam{i}/" for i in range(cameras)] if cameras else [""]


def results_of(probe: ReplayProbe, backend: str, family: str = "yolo", camera: str = "") -> list:
    """Every per-frame result the <family>_<backend> node published so far (for `camera` "cam0/" ...: that
    camera's)."""
    return probe.outputs[f"/{package_of(family, backend)}/{camera}{FAMILIES[family].results}"]


def replay_and_collect(probe: ReplayProbe, backend: str, messages: list, topic: str = "/camera/image_raw",
                       family: str = "yolo", **replay: Any) -> list:
    """Replay `messages` at the recorded rate, each once the previous one was answered; the node's answers.

    The pacing keeps a busy 2-core machine from making frames stale (the node then rightly drops them:
    test_frame_flow tests that); these tests are about what every frame's answer holds."""
    before = len(results_of(probe, backend, family))
    probe.replay(topic, messages, answered=lambda count: len(results_of(probe, backend, family)) >= before + count,
                 **replay)
    probe.spin_until(lambda: len(results_of(probe, backend, family)) >= before + len(messages), 20)
    return results_of(probe, backend, family)[before:]


def decoded(message: Any) -> tuple:
    """(header, BGR image) of a recorded sensor_msgs/Image."""
    msg = deserialize_message(message.rawdata, Image)
    return msg.header, image_to_bgr(msg)


def image_messages(images: list[np.ndarray], spacing_s: float = 1.0) -> list[BagMessage]:
    """Constructed frames as recorded sensor_msgs/Image messages spacing_s apart, stamped from 1 s on, frame
    "camera"."""
    def header(index: int) -> Header:
        nanoseconds = round((1 + index * spacing_s) * 1e9)
        return Header(stamp=Time(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9), frame_id="camera")

    return [BagMessage("/camera/image_raw", "sensor_msgs/msg/Image",
                       serialize_message(messages.bgr8_image(image, header(i))), round(i * spacing_s * 1e9))
            for i, image in enumerate(images)]


def _typed(value: Any) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)


def call(probe: ReplayProbe, service_type: Any, name: str, request: Any) -> Any:
    client = probe.node.create_client(service_type, name)
    assert client.wait_for_service(timeout_sec=30), f"{name} is not offered"
    future = client.call_async(request)
    assert probe.spin_until(future.done, 30), f"{name} did not answer"
    probe.node.destroy_client(client)
    return future.result()


def set_parameter(probe: ReplayProbe, node: str, name: str, value: Any) -> tuple[bool, str]:
    """What `ros2 param set` does: call the node's ~/set_parameters service."""
    request = SetParameters.Request(parameters=[Parameter(name=name, value=_typed(value))])
    result = call(probe, SetParameters, f"{node}/set_parameters", request).results[0]
    return result.successful, result.reason


def set_parameter_async(probe: ReplayProbe, node: str, name: str, value: Any) -> Any:
    """Send a set_parameters request without waiting; the future completes while the probe spins."""
    client = probe.node.create_client(SetParameters, f"{node}/set_parameters")
    assert client.wait_for_service(timeout_sec=30)
    return client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=_typed(value))]))


def get_parameter(probe: ReplayProbe, node: str, name: str) -> Any:
    """What `ros2 param get` does."""
    value = call(probe, GetParameters, f"{node}/get_parameters", GetParameters.Request(names=[name])).values[0]
    return {ParameterType.PARAMETER_STRING: value.string_value,
            ParameterType.PARAMETER_DOUBLE: value.double_value}.get(value.type)


def _transition(name: str) -> ChangeState.Request:
    return ChangeState.Request(transition=Transition(id=getattr(Transition, f"TRANSITION_{name.upper()}")))


def change_state(probe: ReplayProbe, node: str, transition: str) -> bool:
    """What `ros2 lifecycle set <node> <transition>` does; whether the transition succeeded."""
    return call(probe, ChangeState, f"{node}/change_state", _transition(transition)).success


def change_state_async(probe: ReplayProbe, node: str, transition: str) -> Any:
    """Request a transition without waiting; the future completes while the probe spins."""
    client = probe.node.create_client(ChangeState, f"{node}/change_state")
    assert client.wait_for_service(timeout_sec=30)
    return client.call_async(_transition(transition))


def lifecycle_state(probe: ReplayProbe, node: str) -> str:
    """What `ros2 lifecycle get <node>` shows: unconfigured, inactive, active or finalized."""
    return call(probe, GetState, f"{node}/get_state", GetState.Request()).current_state.label


def diagnostics_of(probe: ReplayProbe, node: str) -> list[dict]:
    """Every status the node published on /diagnostics, as {"level", "message", **values}."""
    found = []
    for array in probe.outputs["/diagnostics"]:
        for status in array.status:
            if status.name.startswith(f"{node}: "):
                found.append({"level": int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                              else int(status.level), "message": status.message,
                              **{kv.key: kv.value for kv in status.values}})
    return found
