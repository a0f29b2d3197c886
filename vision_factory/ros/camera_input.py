"""The node's camera input: its subscription to image_raw (or image_raw/compressed) and, with
input_reliability auto, the watch on the topic's publishers that keeps the subscription's QoS matched.

auto subscribes at once, best effort (it hears any camera), and looks at the publishers every
QOS_POLL_S: while they are all reliable it subscribes reliable instead (only then do large frames
arrive whole: lost fragments are sent again), and back to best effort when a best-effort publisher
appears. Each switch is logged. The new subscription is made before the old one goes, and the old one
goes once the new one is connected to every publisher (or after RETIRE_AFTER_S), so no frame is lost
to a switch; a frame both deliver meanwhile is passed on once (a camera that sends the same frame
again, as a replayed bag does, is still heard: only a repeat from the other subscription is skipped).
"""
from __future__ import annotations

from collections import deque
from functools import partial
from typing import Any, Callable, Sequence

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

QOS_POLL_S = 1.0
RETIRE_AFTER_S = 5.0
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
InvalidHandle = rclpy_implementation.InvalidHandle


def matched_publishers(subscription: Any) -> int:
    """Publishers a subscription (or None) is connected to; callable from any thread, while another may
    destroy the subscription."""
    try:
        return subscription.get_publisher_count() if subscription is not None else 0
    except InvalidHandle:  # destroyed meanwhile (stop, switch): none matched
        return 0


def input_qos(reliability: str, depth: int = 1) -> QoSProfile:
    """Keep the last `depth` frames (1 by default: a slow model must never work through a backlog)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITY[reliability])


def matching_reliability(publishers: Sequence[Any]) -> str:
    """The reliability that connects to every publisher found: reliable if they all are, else (none
    found, or any best effort) best effort, which hears any."""
    reliable = bool(publishers) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                                        for p in publishers)
    return "reliable" if reliable else "best_effort"


class CameraInput:
    """Subscribes `node` to `topic` while started; each frame goes to `on_frame(msg)`, and frames the
    middleware reports lost to `on_lost(count)`. `reliability`: best_effort, reliable or auto."""

    def __init__(self, node: Node, topic: str, msg_type: type, reliability: str, depth: int,
                 on_frame: Callable[[Any], None], on_lost: Callable[[int], None]):
        self.topic = topic
        self._node, self._type, self._reliability, self._depth = node, msg_type, reliability, depth
        self._on_frame, self._on_lost = on_frame, on_lost
        self._subscription: Any = None
        self._retiring: Any = None  # auto: the previous subscription, until the new one is connected
        self._retiring_polls = 0
        self._generation = 0  # of the current subscription
        self._mix = (0, 0)  # (reliable, best effort) publishers at the last look
        self._recent: deque[tuple] = deque(maxlen=8)  # (header key, generation) of the last frames
        self._timer: Any = None
        self.reliability = ""  # what the subscription uses now

    def start(self) -> None:
        if self._reliability == "auto":
            self._timer = self._node.create_timer(QOS_POLL_S, self._match)
            self._match()
        else:
            self._subscription = self._subscribe(self._reliability)

    def stop(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        for name in ("_subscription", "_retiring"):
            if getattr(self, name) is not None:
                self._node.destroy_subscription(getattr(self, name))
                setattr(self, name, None)

    def matched_publishers(self) -> int:
        """Publishers the subscription is connected to (callable from any thread)."""
        return matched_publishers(self._subscription)

    def _subscribe(self, reliability: str) -> Any:
        self.reliability = reliability
        self._generation += 1
        events = SubscriptionEventCallbacks(message_lost=lambda info: self._on_lost(info.total_count_change))
        return self._node.create_subscription(self._type, self.topic, partial(self._receive, self._generation),
                                              input_qos(reliability, self._depth), event_callbacks=events)

    def _match(self) -> None:
        """auto, every QOS_POLL_S: subscribe again if the publishers now want the other reliability."""
        publishers = self._node.get_publishers_info_by_topic(self.topic)
        if self._retiring is not None:
            self._retiring_polls += 1
            if (self._subscription.get_publisher_count() >= len(publishers)
                    or self._retiring_polls * QOS_POLL_S >= RETIRE_AFTER_S):
                self._retire()
        wanted = matching_reliability(publishers)
        reliable = sum(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
        mix = (reliable, len(publishers) - reliable)
        if mix != self._mix and self._subscription is not None:  # at start, with no camera yet: silent
            self._node.get_logger().info(f"input QoS on {self.topic}: {wanted}, matching its publishers "
                                         f"({mix[0]} reliable, {mix[1]} best effort)")
        self._mix = mix
        if self._subscription is not None and wanted == self.reliability:
            return
        self._retire()
        self._retiring, self._subscription = self._subscription, self._subscribe(wanted)

    def _retire(self) -> None:
        if self._retiring is not None:
            self._node.destroy_subscription(self._retiring)
            self._retiring, self._retiring_polls = None, 0

    def _receive(self, generation: int, msg: Any) -> None:
        # While two subscriptions overlap, both may deliver a frame, the old one even just before the
        # new one exists: the last few frames are remembered always, and meanwhile a frame the other
        # subscription already delivered is skipped.
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
        if self._retiring is not None and any(seen == key and by != generation for seen, by in self._recent):
            return
        self._recent.append((key, generation))
        self._on_frame(msg)
