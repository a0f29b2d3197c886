"""The publisher code of each output kind (its topics are described in vision_factory.output_kinds).

Publishers are made from that table: results reliable, keep last 10; latched topics transient local,
keep last 1. Their QoS can be overridden at launch (qos_overriding_options), as rclcpp nodes allow.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from vision_factory.depth import METRIC, RELATIVE, DepthMap
from vision_factory.detections import Detections
from vision_factory.drawing import colour_depth, draw_detections, draw_generated_text, draw_masks, draw_poses
from vision_factory.generated_text import GeneratedText
from vision_factory.masks import Segmentation
from vision_factory.output_kinds import OUTPUT_KINDS
from vision_factory.poses import Poses, Skeleton
from vision_factory.ros import messages
from vision_factory.tracking import LiveTracker, tracker_problem

RESULT_QOS = QoSProfile(depth=10)
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def create_publishers(node: Node, kind: str, prefix: str = "") -> dict[str, Any]:
    """A publisher for each topic of output kind `kind` (those whose enabling parameter is set), by topic
    name, on `~/<prefix><name>` (prefix: a camera's, e.g. "cam0/"): relative to the node's name and
    namespace, and remappable."""
    publishers = {}
    for topic in OUTPUT_KINDS[kind].topics:
        if topic.enabled_by and not node.get_parameter(topic.enabled_by).value:
            continue
        publishers[topic.name] = node.create_publisher(
            topic.message_class(), f"~/{prefix}{topic.name}", LATCHED_QOS if topic.latched else RESULT_QOS,
            qos_overriding_options=QoSOverridingOptions.with_default_policies())
    return publishers


class Output:
    """What the node asks of every output kind's publisher class besides configure and publish. Each is made
    with the node and a camera's topic prefix ("" for a node of one camera, "cam0/" ...)."""

    @staticmethod
    def option_problem(name: str, value: Any) -> str:
        """'' if `value` of the kind's parameter `name` can work here, else why not."""
        return ""


class DetectionOutput(Output):
    """~/detections (vision_msgs/Detection2DArray, every processed frame, also when empty, with track ids
    when the `tracker` parameter names one), ~/label_info (vision_msgs/LabelInfo, latched; republished when
    the class map (a prompted model's prompt) or the threshold changes) and ~/debug_image
    (sensor_msgs/Image, bgr8, on request)."""

    THRESHOLD = "confidence_threshold"  # the parameter LabelInfo.threshold reports

    def __init__(self, node: Node, prefix: str = ""):
        self._node = node
        self._publishers = create_publishers(node, "detections", prefix)
        self._label_info: tuple[tuple[str, ...], float] | None = None
        self._threshold = 0.0
        self._tracker = LiveTracker(node.get_logger())

    @staticmethod
    def option_problem(name: str, value: Any) -> str:
        return tracker_problem(value) if name == "tracker" else ""

    def configure(self, values: dict[str, Any], model: Any) -> None:
        """Take the node's parameter values and the model (when a session starts, after changes)."""
        self._threshold = float(values.get(self.THRESHOLD, 0.0))
        # A prompted model's classes follow its parameters (models.PromptedModel): a new prompt, a new map.
        labels_for = getattr(model, "labels_for", None)
        self._publish_label_info(labels_for(values) if labels_for is not None else model.labels)
        self._tracker.configure(values)

    def _publish_label_info(self, labels: tuple[str, ...]) -> None:
        """~/label_info, when the class map or its threshold differs from the last one published."""
        label_info = (labels, self._threshold)
        if label_info != self._label_info:
            self._label_info = label_info
            header = Header(stamp=self._node.get_clock().now().to_msg())
            self._publishers["label_info"].publish(messages.label_info(*label_info, header))

    def publish(self, result: Detections, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._publish_label_info(result.labels)  # a frame run before a prompt changed carries the old map
        track_ids = self._tracker.ids(result.boxes_xyxy, result.scores, messages.stamp_seconds(header))
        if track_ids is not None:
            result = replace(result, track_ids=tuple(track_ids))
        self._publishers["detections"].publish(messages.detection_array(result, header))
        if debug_image:
            self._publishers["debug_image"].publish(messages.bgr8_image(draw_detections(image_bgr, result), header))


class PoseOutput(Output):
    """~/poses (vision_factory_msgs/KeypointPoseArray, every processed frame, also when empty),
    ~/skeleton (vision_factory_msgs/KeypointSkeleton, latched; republished when the model's changes) and
    ~/debug_image (sensor_msgs/Image, bgr8, on request)."""

    def __init__(self, node: Node, prefix: str = ""):
        # Imported here: vision_factory_msgs exists only where pose packages were generated and built.
        from vision_factory.ros import pose_messages

        self._node, self._messages = node, pose_messages
        self._publishers = create_publishers(node, "poses", prefix)
        self._published_skeleton: Skeleton | None = None

    def configure(self, values: dict[str, Any], model: Any) -> None:
        """Take the node's parameter values and the model (when a session starts, after changes)."""
        if model.skeleton != self._published_skeleton:
            self._published_skeleton = model.skeleton
            header = Header(stamp=self._node.get_clock().now().to_msg())
            self._publishers["skeleton"].publish(self._messages.skeleton(model.skeleton, header))

    def publish(self, result: Poses, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._publishers["poses"].publish(self._messages.pose_array(result, header))
        if debug_image:
            self._publishers["debug_image"].publish(messages.bgr8_image(draw_poses(image_bgr, result), header))


class DepthOutput(Output):
    """~/depth (metric models: 32FC1 metres, REP 118) or ~/inverse_depth_relative (relative models: 32FC1
    affine-invariant inverse depth), every processed frame, at the input's size and with its header;
    ~/camera_info (the latest message of camera_info_topic with the depth image's header) when that
    parameter is set (a relative name: under each camera's prefix); ~/debug_image (turbo-coloured bgr8, 0 to debug_image_range) on request."""

    TOPICS = {METRIC: "depth", RELATIVE: "inverse_depth_relative"}  # by DepthMap.kind

    def __init__(self, node: Node, prefix: str = ""):
        self._publishers = create_publishers(node, "depth", prefix)
        self._camera_info: CameraInfo | None = None
        topic = node.get_parameter("camera_info_topic").value
        if topic:
            if not topic.startswith("/"):  # each camera's own, beside its image
                topic = f"{prefix}{topic}"
            # The sensor-data profile (best effort) matches any driver, reliable or not.
            node.create_subscription(CameraInfo, topic, self._on_camera_info, qos_profile_sensor_data)
        self._debug_range = float(node.get_parameter("debug_image_range").value)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def configure(self, values: dict[str, Any], model: Any) -> None:
        self._debug_range = float(values["debug_image_range"])

    def publish(self, result: DepthMap, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._publishers[self.TOPICS[result.kind]].publish(messages.depth_image(result.values, header))
        camera_info = self._camera_info
        if "camera_info" in self._publishers and camera_info is not None:
            camera_info.header = header
            self._publishers["camera_info"].publish(camera_info)
        if debug_image:
            self._publishers["debug_image"].publish(messages.bgr8_image(colour_depth(result, self._debug_range),
                                                                        header))


class MaskOutput(Output):
    """~/masks (mono16 label image: 0 background, 1 + the index of the pixel's prompt), ~/detections (the
    prompts in that order, with their masks' predicted IoU as score), every processed frame with the input's
    header, and ~/debug_image (the masks over the input, bgr8) on request."""

    def __init__(self, node: Node, prefix: str = ""):
        self._publishers = create_publishers(node, "masks", prefix)

    def configure(self, values: dict[str, Any], model: Any) -> None:
        pass

    def publish(self, result: Segmentation, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._publishers["masks"].publish(messages.mono16_image(result.label_image, header))
        self._publishers["detections"].publish(messages.detection_array(result.prompts, header))
        if debug_image:
            self._publishers["debug_image"].publish(messages.bgr8_image(draw_masks(image_bgr, result), header))


class TextOutput(Output):
    """~/text (vision_factory_msgs/GeneratedText: the task and its answer), ~/detections (the regions a
    locating task found), every processed frame with the input's header, and ~/debug_image on request."""

    def __init__(self, node: Node, prefix: str = ""):
        # Imported here: vision_factory_msgs exists only where its packages were generated and built.
        from vision_factory_msgs.msg import GeneratedText as GeneratedTextMessage

        self._message = GeneratedTextMessage
        self._publishers = create_publishers(node, "text", prefix)

    def configure(self, values: dict[str, Any], model: Any) -> None:
        pass

    def publish(self, result: GeneratedText, header: Header, image_bgr: np.ndarray, debug_image: bool) -> None:
        self._publishers["text"].publish(self._message(header=header, task=result.task, text=result.text))
        self._publishers["detections"].publish(messages.detection_array(result.regions, header))
        if debug_image:
            self._publishers["debug_image"].publish(messages.bgr8_image(draw_generated_text(image_bgr, result),
                                                                        header))


# The publisher class of each output kind (vision_factory.output_kinds.OUTPUT_KINDS has the same keys).
OUTPUTS: dict[str, Any] = {"detections": DetectionOutput, "poses": PoseOutput, "depth": DepthOutput,
                           "masks": MaskOutput, "text": TextOutput}
