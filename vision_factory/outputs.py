"""What a node publishes for each output kind a manifest can declare (manifest.OUTPUTS)."""
from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from vision_factory import messages
from vision_factory.detections import Detections
from vision_factory.drawing import draw_detections

RESULT_QOS = QoSProfile(depth=10)
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class DetectionOutput:
    """~/detections (vision_msgs/Detection2DArray, every processed frame, also when empty),
    ~/label_info (vision_msgs/LabelInfo, latched; republished when its threshold changes) and
    ~/debug_image (sensor_msgs/Image, bgr8, on request)."""

    THRESHOLD = "confidence_threshold"  # the parameter LabelInfo.threshold reports

    def __init__(self, node: Node):
        self._node = node
        self._detections = node.create_publisher(Detection2DArray, "~/detections", RESULT_QOS)
        self._debug = node.create_publisher(Image, "~/debug_image", RESULT_QOS)
        self._labels = node.create_publisher(LabelInfo, "~/label_info", LATCHED_QOS)
        self._label_info: tuple[tuple[str, ...], float] | None = None

    def configure(self, values: dict[str, Any], labels: tuple[str, ...]) -> None:
        """Take the node's parameter values and the model's labels (when a session starts, after changes)."""
        label_info = (labels, float(values.get(self.THRESHOLD, 0.0)))
        if label_info != self._label_info:
            self._label_info = label_info
            header = Header(stamp=self._node.get_clock().now().to_msg())
            self._labels.publish(messages.label_info(*label_info, header))

    def publish(self, result: Detections, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._detections.publish(messages.detection_array(result, header))
        if debug_image:
            self._debug.publish(messages.bgr8_image(draw_detections(image_bgr, result), header))

    def describe(self, result: Detections) -> str:
        """One line for logs: "person 0.90, bus 0.81"."""
        return ", ".join(f"{result.class_name(int(c))} {s:.2f}" for c, s in zip(result.class_ids, result.scores))


OUTPUTS: dict[str, Any] = {"detections": DetectionOutput}
