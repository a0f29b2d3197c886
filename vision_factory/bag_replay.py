"""Replay image messages from a rosbag2 (MCAP or sqlite3) into ROS 2, without ros2cli or rosbag2.

On a ROS 2 distribution `ros2 bag play` does the same; this exists for machines where rosbag2 cannot be
installed and for the replay tests. Messages are published as the recorded CDR bytes, so headers
(stamp, frame_id) reach the node exactly as recorded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_TYPES = {"sensor_msgs/msg/Image": "Image", "sensor_msgs/msg/CompressedImage": "CompressedImage"}


@dataclass(frozen=True)
class BagMessage:
    """One recorded message: its topic, ROS type name, CDR bytes and receive time (ns)."""

    topic: str
    msgtype: str
    rawdata: bytes
    timestamp_ns: int


def read_images(bag: Path, topic: str | None = None, compressed: bool = False) -> list[BagMessage]:
    """The image messages of `topic` (default: the bag's first Image, or CompressedImage, topic)."""
    from rosbags.highlevel import AnyReader

    wanted = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    with AnyReader([Path(bag)]) as reader:
        connections = [c for c in reader.connections
                       if (c.topic == topic if topic else c.msgtype == wanted)]
        if not connections:
            found = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections)
            raise ValueError(f"{bag}: no {topic or wanted} topic (the bag has: {found})")
        first = sorted(connections, key=lambda c: c.topic)[0]
        if first.msgtype not in IMAGE_TYPES:
            raise ValueError(f"{bag}: {first.topic} holds {first.msgtype}, not an image type")
        return [BagMessage(first.topic, first.msgtype, bytes(raw), stamp)
                for _, stamp, raw in reader.messages(connections=[first])]


def publish_recorded(node: Any, topic: str, messages: list[BagMessage], rate: float = 1.0,
                     spin: Any = None) -> None:
    """Publish `messages` on `topic` with the recorded spacing divided by `rate`.

    `spin(timeout_s)` is called while waiting, so the caller's subscriptions keep receiving.
    """
    from sensor_msgs import msg as sensor_msgs
    from rclpy.qos import QoSProfile

    msg_class = getattr(sensor_msgs, IMAGE_TYPES[messages[0].msgtype])
    publisher = node.create_publisher(msg_class, topic, QoSProfile(depth=10))
    start_wall, start_bag = time.monotonic(), messages[0].timestamp_ns
    for message in messages:
        due = start_wall + (message.timestamp_ns - start_bag) / 1e9 / rate
        while (remaining := due - time.monotonic()) > 0:
            if spin is not None:
                spin(min(remaining, 0.01))
            else:
                time.sleep(remaining)
        publisher.publish(message.rawdata)
