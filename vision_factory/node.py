"""The rclpy node every generated node subclasses: parameters, live runner, subscription, publication.

A generated node only says which model, backend and parameter specs it has; the behaviour lives here,
once, and is tested here. The same node runs unmanaged (it loads its model and subscribes at once) or
managed, as a ROS 2 lifecycle node (the `<node>_managed` executable):

  configure   loads or exports the model; returns once it is ready (FAILURE, with the error, if not)
  activate    subscribes to the input and publishes results
  deactivate  unsubscribes; nothing more is published
  cleanup     frees the model session
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from vision_factory import diagnostics
from vision_factory.camera_input import CameraInput
from vision_factory.errors import ConfigError
from vision_factory.frame_stats import FrameStats
from vision_factory.frame_worker import LatestFrameWorker
from vision_factory.image_conversion import ImageDecodeError, compressed_to_bgr, image_to_bgr
from vision_factory.live_runner import ERROR, RUNNING, LiveRunner
from vision_factory.manifest import load_manifest
from vision_factory.outputs import OUTPUTS
from vision_factory.parameters import ParameterSpec, active_weights
from vision_factory.runner import Runner, build_runner

ERROR_THROTTLE_S = 5.0
SPIN_PERIOD_S = 0.1  # also the longest a stop signal waits to be noticed
# Diagnostics states of a managed node: before configure, between configure and activate, after shutdown.
UNCONFIGURED, INACTIVE, FINALIZED = "unconfigured", "inactive", "finalized"


class InferenceNode(LifecycleNodeMixin, Node):
    """Subscribes to image_raw (or image_raw/compressed), runs the model, publishes its output kind.

    Unmanaged, the model session is built in the background at start, and `failure` is set if that
    build fails (run_node then exits non-zero). With `managed=True` the lifecycle services are offered
    and the transitions above load, start, stop and free it. Either way a change to a "rebuild"
    parameter rebuilds a loaded session in the background.
    """

    def __init__(self, node_name: str, model: str, backend: str, parameters: Sequence[ParameterSpec],
                 managed: bool = False, **kwargs: Any):
        Node.__init__(self, node_name, **kwargs)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=managed)
        self.managed = managed
        self._specs = {spec.name: spec for spec in parameters}
        for spec in parameters:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self._values = {name: self.get_parameter(name).value for name in self._specs}
        self._manifest = load_manifest(model)
        self._backend = self._manifest.backend(backend)
        self._weights = {w.parameter: w for w in self._manifest.weights}
        for name, value in self._values.items():
            problem = self._value_problem(name, value)
            if problem:
                raise ConfigError(f"parameter '{name}': {problem}")
        self.failure: str | None = None
        self.stopping = threading.Event()  # set on SIGINT / SIGTERM (run_node); a configure in progress ends
        self._loaded = False  # a session is built or being built (unmanaged: always; managed: configured)
        self._active = False  # subscribed and publishing
        self._finalized = False  # managed: shut down, for good
        self._reporting = False  # True while the node itself sets its "report" parameters
        self._announced: Runner | None = None
        self._stats = FrameStats()
        self._last_logged: dict[str, float] = {}  # rejection kind -> when it was last logged
        self._worker = LatestFrameWorker(self._process_frame, name=f"{node_name}-inference")

        self._output = OUTPUTS[self._manifest.output](self)
        self._diagnostics = self.create_publisher(DiagnosticArray, diagnostics.TOPIC, 10)
        # The build thread only triggers this guard condition; its consequences run on the executor.
        self._runner_changed = self.create_guard_condition(self._on_runner_changed)
        self._live = LiveRunner(partial(build_runner, self._manifest, backend, logger=self.get_logger()),
                                self._runner_changed.trigger, self.get_logger())
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        compressed = self._values["input_compressed"]
        # As image_transport does: the compressed stream lives under the (remapped) image topic.
        base = self.resolve_topic_name("image_raw")
        topic, msg_type = (f"{base}/compressed", CompressedImage) if compressed else (base, Image)
        self._decode: Callable[[Any], Any] = compressed_to_bgr if compressed else image_to_bgr
        self._input = CameraInput(self, topic, msg_type, self._values["input_reliability"],
                                  self._values["input_depth"], self._on_image, self._stats.lost)
        self._diagnostics_thread = diagnostics.PeriodicPublisher(self._publish_diagnostics, self.get_logger(),
                                                                 name=f"{node_name}-diagnostics")
        if not managed:
            self._load()
            self._start_input()

    # --- the four phases both modes go through -----------------------------------------------------

    def _load(self) -> None:
        self._loaded = True
        self._live.request(self._values)

    def _start_input(self) -> None:
        self._active = True
        self._input.start()

    def _stop_input(self) -> None:
        self._active = False
        self._input.stop()

    def _unload(self) -> None:
        self._loaded = False
        self._announced = None
        self._live.release()

    # --- lifecycle transitions (managed mode) ------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load or export the model and return once it is ready, or at once when the process is told to
        stop (a TensorRT build takes minutes; the half-written export is discarded on the next launch)."""
        self._load()
        if not self._live.wait(self.stopping):
            self.get_logger().info("stopped while the model was being prepared")
            return TransitionCallbackReturn.FAILURE
        if self._live.current is None:
            self._loaded = False
            self.get_logger().error(f"configure failed: {self._live.last_error}")
            return TransitionCallbackReturn.FAILURE
        self._on_runner_changed()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._start_input()
        self.get_logger().info(f"listening on {self._input.topic}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unload()
        self.get_logger().info("cleaned up: the model session is freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        self._unload()
        self._finalized = True
        return TransitionCallbackReturn.SUCCESS

    def preparing(self) -> bool:
        """Whether a model session is being exported or loaded."""
        return self._live.busy()

    def state(self) -> str:
        """What diagnostics report: the session's state, or where a managed node is in its lifecycle."""
        if self._finalized:
            return FINALIZED
        if self.managed and not self._loaded and self._live.state != ERROR:
            return UNCONFIGURED
        if self.managed and self._live.state == RUNNING and not self._active:
            return INACTIVE
        return self._live.state

    def destroy_node(self) -> None:
        for thread in ("_diagnostics_thread", "_worker"):  # absent when the constructor failed before them
            if hasattr(self, thread):
                getattr(self, thread).stop()
        super().destroy_node()

    # --- parameters -------------------------------------------------------------------------------

    def _value_problem(self, name: str, value: Any) -> str:
        """'' if `value` can work for parameter `name`, else why not."""
        spec = self._specs[name]
        problem = spec.validate(value)
        if problem or spec.applies != "rebuild":
            return problem
        if name in self._weights:
            return self._weights[name].load_module().weights_problem(value)
        return self._backend.option_problem(name, value)

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse a change that cannot work, with the reason; the node keeps its current value."""
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is None:
                continue
            if spec.applies == "report" and not self._reporting:
                return SetParametersResult(successful=False,
                                           reason=f"{parameter.name} reports what runs; it cannot be set")
            problem = self._value_problem(parameter.name, parameter.value)
            runner = self._live.current
            if not problem and runner is not None and parameter.name in runner.frame_options(self._values):
                problem = runner.model.option_problem(parameter.name, parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=f"{parameter.name}: {problem}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        updates = {p.name: p.value for p in parameters if p.name in self._specs}
        changed = {name for name, value in updates.items() if self._values[name] != value}
        # A new dict, swapped in one assignment: the inference thread reads a consistent snapshot.
        self._values = {**self._values, **updates}
        if self._live.current is not None:
            self._output.configure(self._values, self._live.current.model)
        if self._loaded and any(self._specs[name].applies == "rebuild" for name in changed):
            self.get_logger().info(f"rebuilding the model session for {', '.join(sorted(changed))}; "
                                   f"frames keep flowing through the current one")
            self._live.request(self._values)

    # --- runner lifecycle (executor thread) --------------------------------------------------------

    def _on_runner_changed(self) -> None:
        runner = self._live.current
        if runner is None:
            if self._live.state == ERROR and not self._live.busy() and not self.managed:
                self.failure = self._live.last_error  # a managed node reports it from configure instead
            return
        if runner is self._announced:
            return  # a rebuild failed; the live runner logged it and the old session serves
        self._announced = runner
        for name, value in runner.frame_options(self._values).items():
            problem = runner.model.option_problem(name, value)
            if problem:
                self.get_logger().error(f"parameter '{name}' does not suit the new model: {problem}")
        self._output.configure(self._values, runner.model)
        reports = [Parameter(self._backend.report_parameter(), value=runner.session.active)]
        reports += [Parameter(active_weights(name).name, value=str(value)) for name, value in runner.weights.items()]
        self._reporting = True
        try:
            self.set_parameters(reports)
        finally:
            self._reporting = False
        weights = ", ".join(str(artifact.path) for artifact in runner.artifacts.values())
        self.get_logger().info(
            f"ready: {self._manifest.name} on {self._backend.name} ({runner.session.active}), weights {weights}"
            + ("" if self.managed else f", listening on {self._input.topic}"))  # managed: at activate

    def _publish_diagnostics(self) -> None:
        stats = {**self._stats.snapshot(), "matched_publishers": self._input.matched_publishers()}
        status = diagnostics.inference_status(
            self.get_name(), self._backend.name, self.state(), self._live, stats,
            self._worker.dropped,
            self._values["diagnostics_no_input_s"], self._values["diagnostics_latency_ms"])
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics.publish(diagnostics.diagnostic_array(status, header))

    # --- frames ------------------------------------------------------------------------------------

    def _on_image(self, msg: Any) -> None:
        """Subscription callback: hand the frame to the inference thread, replacing any waiting one."""
        self._stats.received()
        self._worker.submit((msg, time.monotonic()))

    def _process_frame(self, item: tuple[Any, float]) -> None:
        """Inference thread: one frame in, one output out. A bad frame is logged (throttled) and
        dropped; nothing raises out of here, so the node keeps serving."""
        msg, received = item
        runner, values = self._live.current, self._values  # taken once: a swap lands between frames
        if runner is None:
            return  # the first session is not ready yet
        try:
            image = self._decode(msg)
            megapixels = image.shape[0] * image.shape[1] / 1e6
            if megapixels > values["max_input_megapixels"]:
                raise ImageDecodeError(f"{image.shape[1]}x{image.shape[0]} is {megapixels:.0f} megapixels, over "
                                       f"max_input_megapixels {values['max_input_megapixels']}", "megapixels")
            started = time.monotonic()
            result = runner.model(image, **runner.frame_options(values))
            inference_s = time.monotonic() - started
            if not self._active:
                return  # deactivated while this frame ran
            self._output.publish(result, msg.header, image, values["publish_debug_image"])
        except ImageDecodeError as e:
            self._reject(e.kind, f"dropped a frame: {e}")
        except Exception as e:  # the node outlives any single frame's failure
            self._reject(type(e).__name__, f"dropped a frame: inference failed: {type(e).__name__}: {e}")
        else:
            stamp_latency = (self.get_clock().now() - Time.from_msg(msg.header.stamp)).nanoseconds / 1e9
            self._stats.published(time.monotonic() - received, inference_s, stamp_latency)

    def _reject(self, kind: str, reason: str) -> None:
        """Count a rejected frame and log why, each kind at most once per ERROR_THROTTLE_S (rclpy's own
        throttle is per call site: one flooding kind would hide every other)."""
        self._stats.rejected(reason)
        now = time.monotonic()
        if now - self._last_logged.get(kind, -ERROR_THROTTLE_S) >= ERROR_THROTTLE_S:
            self._last_logged[kind] = now
            self.get_logger().error(reason)


def init_until_signalled(args: list[str] | None = None) -> threading.Event:
    """rclpy.init with our own SIGINT/SIGTERM handling: the returned event is set, and the caller's spin
    loop ends. (rclpy's handlers would shut the context down under a thread still using it; this way the
    frame in progress finishes, then the node and context go.)"""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


def run_node(node_class: Callable[..., InferenceNode], args: list[str] | None = None,
             managed: bool = False) -> None:
    """Entry point of a generated node: start, spin, exit 0 on SIGINT/SIGTERM.

    A failure to start (bad parameter, missing model, unusable backend) prints one readable line and
    exits 1. `managed` runs it as a lifecycle node, which waits unconfigured for a lifecycle manager.
    """
    stopping = init_until_signalled(args)
    name = Path(sys.argv[0]).name
    try:
        node = node_class(managed=managed)
        node.stopping = stopping
    except Exception as e:  # turn any start failure into one line, not a traceback
        print(f"{name}: cannot start: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        sys.exit(1)
    executor = SingleThreadedExecutor()  # see diagnostics.PeriodicPublisher for why not multi-threaded
    executor.add_node(node)
    try:
        while not stopping.is_set() and node.failure is None:
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    if node.preparing():  # stopped during an export: end it with the process, not after it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if node.failure is not None:
        print(f"{name}: cannot start: {node.failure}", file=sys.stderr)
        sys.exit(1)
