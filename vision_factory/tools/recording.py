"""What a node published, recorded into an MCAP rosbag2 with every message definition embedded, so that
Foxglove Studio and `ros2 bag play` open the file as it is (written with rosbags: no rosbag2 needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

ROS_DISTRIBUTION_TYPES = "ROS2_KILTED"  # rosbags' built-in definitions of the core message packages


def ros_type_name(msg_class: type) -> str:
    """'vision_msgs/msg/Detection2DArray' for rclpy's vision_msgs.msg.Detection2DArray."""
    return f"{msg_class.__module__.split('.')[0]}/msg/{msg_class.__name__}"


def typestore_for(type_names: list[str]) -> Any:
    """rosbags' typestore of the core packages, plus every installed interface package among
    `type_names` it lacks (vision_msgs, vision_factory_msgs), read from the package's own .msg files."""
    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(getattr(Stores, ROS_DISTRIBUTION_TYPES))
    missing = sorted({name.split("/")[0] for name in type_names if name not in store.types})
    types: dict = {}
    for package in missing:
        for msg in sorted((Path(get_package_share_directory(package)) / "msg").glob("*.msg")):
            types.update(get_types_from_msg(msg.read_text(), f"{package}/msg/{msg.stem}"))
    store.register(types)
    return store


class Recorder:
    """An MCAP bag at `path` with one connection per topic of `topics` (topic -> rclpy message class);
    `write(topic, msg, time_ns)` adds a received message. Close it to finish the file."""

    def __init__(self, path: Path, topics: Mapping[str, type]):
        from rosbags.rosbag2 import StoragePlugin, Writer

        names = {topic: ros_type_name(msg_class) for topic, msg_class in topics.items()}
        store = typestore_for(list(names.values()))
        self.path = Path(path)
        self._writer = Writer(self.path, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections = {topic: self._writer.add_connection(topic, name, typestore=store)
                             for topic, name in names.items()}

    def write(self, topic: str, msg: Any, time_ns: int) -> None:
        from rclpy.serialization import serialize_message

        self._writer.write(self._connections[topic], time_ns, serialize_message(msg))

    def close(self) -> None:
        self._writer.close()
