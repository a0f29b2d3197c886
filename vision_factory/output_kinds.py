"""The output kinds a model can publish (a manifest's `output`), each described once, without ROS.

An output kind lists its topics (name under the node, message type, latched or not, one doc line) and
the parameters every node of that kind declares. Everything else is derived from this table: the node's
publishers (vision_factory.ros.outputs), a generated package's message dependencies and README rows
(generator), manifest validation, and the topic names the tests, the demo and the benchmark listen to.
A new output kind is one entry here plus its publisher class in vision_factory.ros.outputs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from vision_factory.parameters import ParameterSpec
from vision_factory.tracking import NONE, tracker_parameters


@dataclass(frozen=True)
class Topic:
    """One topic a node publishes, as `~/<name>`.

    message: the ROS type, "package/msg/Type". latched: transient local, keep last 1, published when it
    changes (late subscribers get the newest). per_frame: one message per processed frame, with the input
    frame's header. enabled_by: a string parameter that must be set for the topic to exist ('' = always).
    """

    name: str
    message: str
    doc: str
    latched: bool = False
    per_frame: bool = False
    enabled_by: str = ""

    @property
    def package(self) -> str:
        """The message package, e.g. vision_msgs."""
        return self.message.split("/")[0]

    def message_class(self) -> type:
        """The rclpy message class (imports the message package's Python module)."""
        package, _, name = self.message.split("/")
        return getattr(importlib.import_module(f"{package}.msg"), name)


@dataclass(frozen=True)
class OutputKind:
    """What a node of this kind publishes and which parameters it adds to every node of the kind."""

    name: str
    topics: tuple[Topic, ...]
    parameters: tuple[ParameterSpec, ...] = ()
    node: str = "inference"  # the manifest `node` whose packages publish it (vision_factory.manifest.NODES)
    # A string parameter naming a vision_msgs/Detection2DArray topic that prompts the model: when set, a frame
    # is run when its prompts arrive (matched by header stamp), with them, instead of on arrival.
    prompted_by: str = ""

    def topic(self, name: str) -> Topic:
        """The topic `~/<name>`; KeyError naming the kind's topics otherwise."""
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(f"output kind '{self.name}' has no topic '{name}' (it has: "
                       f"{', '.join(t.name for t in self.topics)})")

    @property
    def message_packages(self) -> tuple[str, ...]:
        """The message packages its topics use, in order of first use."""
        return tuple(dict.fromkeys(topic.package for topic in self.topics))

    @property
    def latched(self) -> Topic | None:
        """The latched topic a node publishes once its model is ready (None if the kind has none)."""
        return next((topic for topic in self.topics if topic.latched), None)


def _debug_image(doc: str) -> Topic:
    return Topic("debug_image", "sensor_msgs/msg/Image", f"{doc}, when publish_debug_image is true",
                 per_frame=True)


OUTPUT_KINDS: dict[str, OutputKind] = {kind.name: kind for kind in (
    OutputKind("detections", (
        Topic("detections", "vision_msgs/msg/Detection2DArray",
              "every processed frame, also when empty; input header", per_frame=True),
        Topic("label_info", "vision_msgs/msg/LabelInfo", "class map, latched (transient local)", latched=True),
        _debug_image("annotated bgr8, with track ids"),
    ), parameters=tracker_parameters(NONE)),
    OutputKind("tracks", (
        Topic("detections", "vision_msgs/msg/Detection2DArray", "each input message with Detection2D.id set "
              "to its track's id ('' where no confirmed track holds the box); input header", per_frame=True),
    ), parameters=tracker_parameters("bytetrack"), node="tracker"),
    OutputKind("poses", (
        Topic("poses", "vision_factory_msgs/msg/KeypointPoseArray",
              "every processed frame, also when empty; input header", per_frame=True),
        Topic("skeleton", "vision_factory_msgs/msg/KeypointSkeleton",
              "keypoint names and limbs, latched (transient local)", latched=True),
        _debug_image("annotated bgr8"),
    )),
    OutputKind("depth", (
        Topic("depth", "sensor_msgs/msg/Image",
              "metric models: 32FC1 depth in metres (REP 118), the input's size and header", per_frame=True),
        Topic("inverse_depth_relative", "sensor_msgs/msg/Image", "relative models: 32FC1 affine-invariant "
              "inverse depth (no metric meaning), the input's size and header", per_frame=True),
        Topic("camera_info", "sensor_msgs/msg/CameraInfo", "with camera_info_topic set: its latest message, "
              "with each depth image's header", per_frame=True, enabled_by="camera_info_topic"),
        _debug_image("turbo-coloured bgr8, 0 to debug_image_range"),
    ), parameters=(
        ParameterSpec("camera_info_topic", "string", "", "A sensor_msgs/CameraInfo topic to republish on "
                      "~/camera_info with each depth image's header, so depth_image_proc can make point clouds "
                      "(depth is at the input resolution: the intrinsics apply unchanged). Empty: none.",
                      applies="start"),
        ParameterSpec("debug_image_range", "double", 10.0, "The value at the top of ~/debug_image's turbo colour "
                      "scale (0 at the bottom): metres for metric depth, the model's units for relative inverse "
                      "depth.", range=(0.001, 1000000.0)),
    )),
    OutputKind("masks", (
        Topic("masks", "sensor_msgs/msg/Image", "mono16 label image, the input's size and header: 0 background, "
              "else 1 + the index in ~/detections of the prompt whose mask holds the pixel", per_frame=True),
        Topic("detections", "vision_msgs/msg/Detection2DArray", "the prompts in label order, each with its box, "
              "class and id (Detection2D.id) and its mask's predicted IoU as score; input header", per_frame=True),
        _debug_image("the masks over the input, bgr8"),
    ), parameters=(
        ParameterSpec("prompts_topic", "string", "", "A vision_msgs/Detection2DArray topic (e.g. a detector's "
                      "~/detections) whose boxes prompt the masks: each message is matched to the frame of its header "
                      "stamp, which is then answered with masks of its boxes (and the fixed prompts). A relative name "
                      "is under each camera's prefix. Empty: every frame is answered with the fixed prompts.",
                      applies="start"),
        ParameterSpec("prompt_frames", "integer", 30, "With prompts_topic: how many recent frames are kept for "
                      "prompts to find theirs (a prompt whose frame is gone is counted in diagnostics as unmatched).",
                      range=(1, 1000), applies="start"),
    ), prompted_by="prompts_topic"),
    OutputKind("text", (
        Topic("text", "vision_factory_msgs/msg/GeneratedText", "every processed frame: the task and its answer "
              "(the generated text); input header", per_frame=True),
        Topic("detections", "vision_msgs/msg/Detection2DArray", "every processed frame: the regions a locating "
              "task found, class_id = their label (or text read), score 1 (the model gives none); empty for "
              "text tasks; input header", per_frame=True),
        _debug_image("the regions and the text over the input, bgr8"),
    )),
)}
