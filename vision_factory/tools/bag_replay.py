"""Replay image messages from a rosbag2 (MCAP or sqlite3) into ROS 2, without ros2cli or rosbag2.

On a ROS 2 distribution `ros2 bag play` does the same; this exists for machines where rosbag2 cannot be
installed and for the replay tests. Messages are published as the recorded CDR bytes, so headers
(stamp, frame_id) reach the node exactly as recorded.
"""
from __future__ import annotations

import importlib
import time
from functools import partial
from typing import Any

from vision_factory.recorded_images import IMAGE_TYPES, BagMessage


def decode(messages: list[BagMessage]) -> list[Any]:
    """The recorded messages as rclpy message objects (sensor_msgs/Image or CompressedImage)."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs import msg as sensor_msgs

    return [deserialize_message(m.rawdata, getattr(sensor_msgs, IMAGE_TYPES[m.msgtype])) for m in messages]


def publish_recorded(publisher: Any, messages: list[BagMessage], rate: float = 1.0, spin: Any = None,
                     on_frame: Any = None, answered: Any = None, answer_timeout_s: float = 30.0) -> None:
    """Publish `messages` (as their recorded bytes) with the recorded spacing divided by `rate`.

    `spin(timeout_s)` is called while waiting, so the caller's subscriptions keep receiving;
    `on_frame(index)` just before each message is published. With `answered(count)` (whether `count`
    frames have been answered), each frame after the first also waits until the previous one was
    answered (at most `answer_timeout_s`), and the schedule shifts by that wait: the recorded rate when
    the node keeps up, the node's pace when it does not, so none is dropped for being stale.
    """
    def wait(until: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not until() and (remaining := deadline - time.monotonic()) > 0:
            if spin is not None:
                spin(min(remaining, 0.01))
            else:
                time.sleep(min(remaining, 0.01))

    start_wall, start_bag, delay = time.monotonic(), messages[0].timestamp_ns, 0.0
    for index, message in enumerate(messages):
        due = start_wall + delay + (message.timestamp_ns - start_bag) / 1e9 / rate
        wait(lambda: time.monotonic() >= due, max(due - time.monotonic(), 0.0))
        if answered is not None:
            waited_from = time.monotonic()
            wait(lambda: answered(index), answer_timeout_s)
            delay += time.monotonic() - waited_from
        if on_frame is not None:
            on_frame(index)
        publisher.publish(message.rawdata)


class ReplayProbe:
    """A node of its own ROS context that replays frames into a running node and records its answers.

    `outputs` maps topic -> list of received messages, in arrival order.
    """

    def __init__(self, outputs: dict[str, type], domain_id: int | None = None, name: str = "replay_probe",
                 latched: tuple[str, ...] = (), recorder: Any = None):
        """Subscribe to `outputs` (topic -> message type); `latched` topics with transient-local QoS.
        With a `recorder` (recording.Recorder) every message received is also written to its bag."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.outputs: dict[str, list] = {}
        self._recorder = recorder
        self.listen(outputs, latched)

    def listen(self, outputs: dict[str, type], latched: tuple[str, ...] = ()) -> None:
        """Also subscribe to `outputs` (topics already heard are left as they are). One probe can hear
        several nodes of its domain: a second participant in the process would be a second Fast DDS
        participant, and two in one process can deadlock in teardown (eProsima/Fast-DDS#6193)."""
        from rclpy.qos import DurabilityPolicy, QoSProfile

        for topic, msg_type in outputs.items():
            if topic in self.outputs:
                continue
            self.outputs[topic] = []
            durability = DurabilityPolicy.TRANSIENT_LOCAL if topic in latched else DurabilityPolicy.VOLATILE
            self.node.create_subscription(msg_type, topic, partial(self._received, topic),
                                          QoSProfile(depth=100, durability=durability))

    def _received(self, topic: str, msg: Any) -> None:
        self.outputs[topic].append(msg)
        if self._recorder is not None:
            self._recorder.write(topic, msg, time.time_ns())

    def spin(self, timeout_s: float) -> None:
        self.executor.spin_once(timeout_sec=timeout_s)

    def spin_until(self, condition: Any, timeout_s: float) -> bool:
        """Spin until condition() is true or the timeout passes; whether it became true."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.spin(0.05)
        return True

    def wait_for_message(self, topic: str, timeout_s: float, alive: Any = lambda: True) -> bool:
        """Wait until a message arrives on `topic` (one of `outputs`), while alive() holds.

        A node publishes its latched label_info once its model session is ready."""
        return self.spin_until(lambda: bool(self.outputs[topic]) or not alive(), timeout_s) \
            and bool(self.outputs[topic])

    def replay(self, topic: str, messages: list[BagMessage], rate: float = 1.0, settle_s: float = 0.5,
               on_frame: Any = None, qos: Any = 10, answered: Any = None) -> None:
        """Publish `messages` at the recorded rate after giving discovery `settle_s` to match endpoints;
        `on_frame(index)` runs before each one; `answered` paces it as in publish_recorded.
        `qos`: the publisher's (reliable, keep last 10 by default)."""
        package, _, name = messages[0].msgtype.split("/")
        msg_class = getattr(importlib.import_module(f"{package}.msg"), name)
        publisher = self.node.create_publisher(msg_class, topic, qos)
        self.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
        end = time.monotonic() + settle_s
        self.spin_until(lambda: time.monotonic() > end, settle_s + 1)
        publish_recorded(publisher, messages, rate, self.spin, on_frame, answered)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
