"""The demo's recording of what the node published: an MCAP rosbag2 that reads back with rosbags, every
message intact, with message definitions embedded that are vision_msgs' own (what Foxglove Studio and
`ros2 bag play` decode with)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BAG, INT8_ONNX, asset

pytest.importorskip("rclpy")
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.typesys import get_types_from_msg  # noqa: E402

DETECTIONS = "/yolo_onnx/detections"


def installed_definitions(package: str) -> dict:
    """Field layouts of every message of an installed interface package, from its own .msg files."""
    types: dict = {}
    for msg in (Path(get_package_share_directory(package)) / "msg").glob("*.msg"):
        types.update(get_types_from_msg(msg.read_text(), f"{package}/msg/{msg.stem}"))
    return types


def test_the_demo_records_what_the_node_published(tmp_path: Path) -> None:
    asset(BAG), asset(INT8_ONNX)
    result = subprocess.run([sys.executable, "-m", "vision_factory.tools.demo", "--workspace", str(tmp_path / "ws"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    bag = tmp_path / "out" / "demo_bag"
    assert f"recorded the node's outputs to {bag}" in result.stdout and list(bag.glob("*.mcap"))
    with AnyReader([bag]) as reader:
        connections = {c.topic: c for c in reader.connections}
        counts = {topic: sum(1 for _ in reader.messages(connections=[c])) for topic, c in connections.items()}
        detections = [reader.deserialize(raw, c.msgtype)
                      for c, _, raw in reader.messages(connections=[connections[DETECTIONS]])]
        schema = connections[DETECTIONS].msgdef.data
    assert connections[DETECTIONS].msgtype == "vision_msgs/msg/Detection2DArray"
    assert {"/yolo_onnx/label_info", "/yolo_onnx/debug_image", "/diagnostics"} <= set(connections)
    # The bag replays at its recorded rate: a busy machine may answer fewer frames; each answer is recorded.
    answers, frames = (int(n) for n in result.stdout.split(" frames;")[0].split()[-4::3])
    assert frames == 5 and 1 <= answers <= frames
    assert counts[DETECTIONS] == counts["/yolo_onnx/debug_image"] == answers and counts["/diagnostics"] >= 1
    assert any(d.results[0].hypothesis.class_id == "person" for array in detections for d in array.detections)
    if answers >= 2:  # the demo tracks: a track gets its id on its second frame
        assert any(d.id for array in detections[1:] for d in array.detections) and " #" in result.stdout
    # The embedded definition, parsed as a reader does, lays every vision_msgs type out as vision_msgs does.
    embedded = get_types_from_msg(schema, "vision_msgs/msg/Detection2DArray")
    upstream = installed_definitions("vision_msgs")
    for name in ("vision_msgs/msg/Detection2DArray", "vision_msgs/msg/Detection2D",
                 "vision_msgs/msg/ObjectHypothesisWithPose", "vision_msgs/msg/BoundingBox2D"):
        assert embedded[name] == upstream[name], name
