"""What a node publishes for each output kind a manifest can declare (manifest.OUTPUTS)."""
from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from vision_factory import messages
from vision_factory.depth import METRIC, RELATIVE, DepthMap
from vision_factory.detections import Detections
from vision_factory.drawing import colour_depth, draw_detections, draw_poses
from vision_factory.poses import Poses, Skeleton

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

    def configure(self, values: dict[str, Any], model: Any) -> None:
        """Take the node's parameter values and the model (when a session starts, after changes)."""
        label_info = (model.labels, float(values.get(self.THRESHOLD, 0.0)))
        if label_info != self._label_info:
            self._label_info = label_info
            header = Header(stamp=self._node.get_clock().now().to_msg())
            self._labels.publish(messages.label_info(*label_info, header))

    def publish(self, result: Detections, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._detections.publish(messages.detection_array(result, header))
        if debug_image:
            self._debug.publish(messages.bgr8_image(draw_detections(image_bgr, result), header))



class PoseOutput:
    """~/poses (vision_factory_msgs/KeypointPoseArray, every processed frame, also when empty),
    ~/skeleton (vision_factory_msgs/KeypointSkeleton, latched; republished when the model's changes) and
    ~/debug_image (sensor_msgs/Image, bgr8, on request)."""

    def __init__(self, node: Node):
        # Imported here: vision_factory_msgs exists only where pose packages were generated and built.
        from vision_factory import pose_messages
        from vision_factory_msgs.msg import KeypointPoseArray, KeypointSkeleton

        self._node, self._messages = node, pose_messages
        self._poses = node.create_publisher(KeypointPoseArray, "~/poses", RESULT_QOS)
        self._debug = node.create_publisher(Image, "~/debug_image", RESULT_QOS)
        self._skeleton = node.create_publisher(KeypointSkeleton, "~/skeleton", LATCHED_QOS)
        self._published_skeleton: Skeleton | None = None

    def configure(self, values: dict[str, Any], model: Any) -> None:
        """Take the node's parameter values and the model (when a session starts, after changes)."""
        if model.skeleton != self._published_skeleton:
            self._published_skeleton = model.skeleton
            header = Header(stamp=self._node.get_clock().now().to_msg())
            self._skeleton.publish(self._messages.skeleton(model.skeleton, header))

    def publish(self, result: Poses, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._poses.publish(self._messages.pose_array(result, header))
        if debug_image:
            self._debug.publish(messages.bgr8_image(draw_poses(image_bgr, result), header))


class DepthOutput:
    """~/depth (metric models: 32FC1 metres, REP 118) or ~/inverse_depth_relative (relative models: 32FC1
    affine-invariant inverse depth), every processed frame, at the input's size and with its header;
    ~/camera_info (the latest message of camera_info_topic with the depth image's header) when that
    parameter is set; ~/debug_image (turbo-coloured bgr8, 0 to debug_image_range) on request."""

    def __init__(self, node: Node):
        self._publishers = {METRIC: node.create_publisher(Image, "~/depth", RESULT_QOS),
                            RELATIVE: node.create_publisher(Image, "~/inverse_depth_relative", RESULT_QOS)}
        self._debug = node.create_publisher(Image, "~/debug_image", RESULT_QOS)
        self._camera_info: CameraInfo | None = None
        self._camera_info_publisher = None
        topic = node.get_parameter("camera_info_topic").value
        if topic:
            self._camera_info_publisher = node.create_publisher(CameraInfo, "~/camera_info", RESULT_QOS)
            # The sensor-data profile (best effort) matches any driver, reliable or not.
            node.create_subscription(CameraInfo, topic, self._on_camera_info, qos_profile_sensor_data)
        self._debug_range = float(node.get_parameter("debug_image_range").value)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def configure(self, values: dict[str, Any], model: Any) -> None:
        self._debug_range = float(values["debug_image_range"])

    def publish(self, result: DepthMap, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._publishers[result.kind].publish(messages.depth_image(result.values, header))
        camera_info = self._camera_info
        if self._camera_info_publisher is not None and camera_info is not None:
            camera_info.header = header
            self._camera_info_publisher.publish(camera_info)
        if debug_image:
            self._debug.publish(messages.bgr8_image(colour_depth(result, self._debug_range), header))


OUTPUTS: dict[str, Any] = {"detections": DetectionOutput, "poses": PoseOutput, "depth": DepthOutput}
