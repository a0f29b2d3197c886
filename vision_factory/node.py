"""The rclpy node every generated node subclasses: parameters, runner, subscription, publication.

A generated node only says which model, backend and parameter specs it has; the behaviour lives here,
once, and is tested here.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from vision_factory.errors import ConfigError
from vision_factory.image_conversion import ImageDecodeError, compressed_to_bgr, image_to_bgr
from vision_factory.manifest import load_manifest
from vision_factory.outputs import OUTPUTS
from vision_factory.parameters import ParameterSpec
from vision_factory.runner import build_runner

ERROR_THROTTLE_S = 5.0
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def input_qos(reliability: str) -> QoSProfile:
    """Keep only the newest frame: a slow model must never work through a backlog."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=RELIABILITY[reliability])


class InferenceNode(Node):
    """Subscribes to image_raw (or image_raw/compressed), runs the model, publishes its output kind."""

    def __init__(self, node_name: str, model: str, backend: str, parameters: Sequence[ParameterSpec],
                 **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._specs = {spec.name: spec for spec in parameters}
        for spec in parameters:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self._values = {name: self.get_parameter(name).value for name in self._specs}
        for name, value in self._values.items():
            problem = self._specs[name].validate(value)
            if problem:
                raise ConfigError(f"parameter '{name}': {problem}")

        manifest = load_manifest(model)
        self.runner = build_runner(manifest, backend, self._values, self.get_logger())
        self._frame_options = self.runner.frame_options(self._values)
        for name, value in self._frame_options.items():
            problem = self.runner.model.option_problem(name, value)
            if problem:
                raise ConfigError(f"parameter '{name}': {problem}")
        self._output = OUTPUTS[manifest.output](self, self.runner.labels)
        self._output.configure(self._values)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        compressed = self._values["input_compressed"]
        # As image_transport does: the compressed stream lives under the (remapped) image topic.
        base = self.resolve_topic_name("image_raw")
        topic, msg_type = (f"{base}/compressed", CompressedImage) if compressed else (base, Image)
        self._decode: Callable[[Any], Any] = compressed_to_bgr if compressed else image_to_bgr
        self._subscription = self.create_subscription(msg_type, topic, self._on_image,
                                                      input_qos(self._values["input_reliability"]))
        self.get_logger().info(
            f"ready: {manifest.name} on {backend} ({self.runner.session.active}), weights "
            f"{self.runner.artifact.path}, listening on {self._subscription.topic_name} "
            f"({self._values['input_reliability']})")

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse a change that cannot work, with the reason; the node keeps its current value."""
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is None:
                continue
            problem = spec.validate(parameter.value)
            if not problem and parameter.name in self._frame_options:
                problem = self.runner.model.option_problem(parameter.name, parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=f"{parameter.name}: {problem}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        for parameter in parameters:
            if parameter.name in self._specs:
                self._values[parameter.name] = parameter.value
        self._frame_options = self.runner.frame_options(self._values)
        self._output.configure(self._values)

    def _on_image(self, msg: Any) -> None:
        """One frame in, one output out; a bad frame is logged (throttled) and dropped, never raised."""
        try:
            image = self._decode(msg)
        except ImageDecodeError as e:
            self.get_logger().error(f"dropped a frame: {e}", throttle_duration_sec=ERROR_THROTTLE_S)
            return
        try:
            result = self.runner.model(image, **self._frame_options)
        except Exception as e:  # the node outlives any single frame's failure
            self.get_logger().error(f"dropped a frame: inference failed: {type(e).__name__}: {e}",
                                    throttle_duration_sec=ERROR_THROTTLE_S)
            return
        self._output.publish(result, msg.header, image, self._values["publish_debug_image"])
        self.get_logger().debug(f"{len(result)} results: {self._output.describe(result)}")


def run_node(node_class: Callable[[], Node], args: list[str] | None = None) -> None:
    """Entry point of a generated node: start, spin, exit 0 on SIGINT/SIGTERM.

    A failure to start (missing model, unusable backend) prints one readable line and exits 1.
    """
    rclpy.init(args=args)
    try:
        node = node_class()
    except Exception as e:  # turn any start failure into one line, not a traceback
        print(f"{Path(sys.argv[0]).name}: cannot start: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        sys.exit(1)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
