"""Image messages recorded in a rosbag2 folder (MCAP or sqlite3), read with the rosbags library: no ROS 2
installation needed, so the core (int8 calibration from a bag) can read them as well as the tools."""
from __future__ import annotations

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


def deserialize(messages: list[BagMessage]) -> list[Any]:
    """The messages as rosbags' message objects: the fields of sensor_msgs/Image or CompressedImage, which the
    decoders in vision_factory.image_conversion read like rclpy's."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.LATEST)
    return [store.deserialize_cdr(m.rawdata, m.msgtype) for m in messages]
