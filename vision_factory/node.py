"""The rclpy node every generated node subclasses: parameters, live runner, subscription, publication.

A generated node only says which model, backend and parameter specs it has; the behaviour lives here,
once, and is tested here.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from vision_factory import diagnostics
from vision_factory.backends import get_backend
from vision_factory.errors import ConfigError
from vision_factory.image_conversion import ImageDecodeError, compressed_to_bgr, image_to_bgr
from vision_factory.live_runner import ERROR, LiveRunner
from vision_factory.manifest import load_manifest
from vision_factory.outputs import OUTPUTS
from vision_factory.parameters import ParameterSpec
from vision_factory.runner import Runner, build_runner

ERROR_THROTTLE_S = 5.0
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def input_qos(reliability: str) -> QoSProfile:
    """Keep only the newest frame: a slow model must never work through a backlog."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=RELIABILITY[reliability])


class InferenceNode(Node):
    """Subscribes to image_raw (or image_raw/compressed), runs the model, publishes its output kind.

    The model session is built in the background, at start and whenever a "rebuild" parameter changes;
    `failure` is set if the first build fails (run_node then exits non-zero).
    """

    def __init__(self, node_name: str, model: str, backend: str, parameters: Sequence[ParameterSpec],
                 **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._specs = {spec.name: spec for spec in parameters}
        for spec in parameters:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self._values = {name: self.get_parameter(name).value for name in self._specs}
        self._manifest, self._backend = load_manifest(model), get_backend(backend)
        for name, value in self._values.items():
            problem = self._value_problem(name, value)
            if problem:
                raise ConfigError(f"parameter '{name}': {problem}")
        self.failure: str | None = None
        self._reporting = False  # True while the node itself sets its "report" parameters
        self._announced: Runner | None = None
        self._frame_options: dict[str, Any] = {}

        self._output = OUTPUTS[self._manifest.output](self)
        self._diagnostics = self.create_publisher(DiagnosticArray, diagnostics.TOPIC, 10)
        self.create_timer(diagnostics.PERIOD_S, self._publish_diagnostics)
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
        self._subscription = self.create_subscription(msg_type, topic, self._on_image,
                                                      input_qos(self._values["input_reliability"]))
        self._live.request(self._values)

    # --- parameters -------------------------------------------------------------------------------

    def _value_problem(self, name: str, value: Any) -> str:
        """'' if `value` can work for parameter `name`, else why not."""
        spec = self._specs[name]
        problem = spec.validate(value)
        if problem or spec.applies != "rebuild":
            return problem
        if name == "model":
            return self._manifest.load_module().weights_problem(value)
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
            if not problem and parameter.name in self._frame_options and runner is not None:
                problem = runner.model.option_problem(parameter.name, parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=f"{parameter.name}: {problem}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        changed = {p.name for p in parameters if p.name in self._specs and self._values[p.name] != p.value}
        for parameter in parameters:
            if parameter.name in self._specs:
                self._values[parameter.name] = parameter.value
        if self._live.current is not None:
            self._frame_options = self._live.current.frame_options(self._values)
            self._output.configure(self._values, self._live.current.labels)
        if any(self._specs[name].applies == "rebuild" for name in changed):
            self.get_logger().info(f"rebuilding the model session for {', '.join(sorted(changed))}; "
                                   f"frames keep flowing through the current one")
            self._live.request(self._values)

    # --- runner lifecycle (executor thread) --------------------------------------------------------

    def _on_runner_changed(self) -> None:
        runner = self._live.current
        if runner is None:
            if self._live.state == ERROR and not self._live.busy():
                self.failure = self._live.last_error
            return
        if runner is self._announced:
            return  # a rebuild failed; the live runner logged it and the old session serves
        self._announced = runner
        self._frame_options = runner.frame_options(self._values)
        for name, value in self._frame_options.items():
            problem = runner.model.option_problem(name, value)
            if problem:
                self.get_logger().error(f"parameter '{name}' does not suit the new model: {problem}")
        self._output.configure(self._values, runner.labels)
        self._reporting = True
        try:
            self.set_parameters([Parameter(self._backend.report_parameter(), value=runner.session.active)])
        finally:
            self._reporting = False
        self.get_logger().info(
            f"ready: {self._manifest.name} on {self._backend.name} ({runner.session.active}), weights "
            f"{runner.artifact.path}, listening on {self._subscription.topic_name} "
            f"({self._values['input_reliability']})")

    def _publish_diagnostics(self) -> None:
        status = diagnostics.inference_status(self.get_name(), self._backend.name, self._live)
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics.publish(diagnostics.diagnostic_array(status, header))

    # --- frames ------------------------------------------------------------------------------------

    def _on_image(self, msg: Any) -> None:
        """One frame in, one output out; a bad frame is logged (throttled) and dropped, never raised."""
        runner = self._live.current  # taken once: a swap lands between frames, never inside one
        if runner is None:
            return  # the first session is not ready yet
        if runner is not self._announced:
            self._on_runner_changed()  # a new session arrived just now: adopt it before its first frame
        try:
            image = self._decode(msg)
        except ImageDecodeError as e:
            self.get_logger().error(f"dropped a frame: {e}", throttle_duration_sec=ERROR_THROTTLE_S)
            return
        try:
            result = runner.model(image, **self._frame_options)
        except Exception as e:  # the node outlives any single frame's failure
            self.get_logger().error(f"dropped a frame: inference failed: {type(e).__name__}: {e}",
                                    throttle_duration_sec=ERROR_THROTTLE_S)
            return
        self._output.publish(result, msg.header, image, self._values["publish_debug_image"])


def run_node(node_class: Callable[[], InferenceNode], args: list[str] | None = None) -> None:
    """Entry point of a generated node: start, spin, exit 0 on SIGINT/SIGTERM.

    A failure to start (bad parameter, missing model, unusable backend) prints one readable line and
    exits 1.
    """
    rclpy.init(args=args)
    name = Path(sys.argv[0]).name
    try:
        node = node_class()
    except Exception as e:  # turn any start failure into one line, not a traceback
        print(f"{name}: cannot start: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        sys.exit(1)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and node.failure is None:
            executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    if node.failure is not None:
        print(f"{name}: cannot start: {node.failure}", file=sys.stderr)
        sys.exit(1)
