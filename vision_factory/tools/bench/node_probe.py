"""Measuring a running node process from another process over ROS 2: time to first answer, latency
from the frame's stamp to the answer's arrival, throughput at a given input rate, memory and CPU.

Used by the benchmarks for our generated nodes and for the baselines alike, so every figure is taken
the same way.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vision_factory.tools.workspace import start_process, stop

FIRST_ANSWER_PERIOD_S = 0.05  # while waiting for the first answer, a frame every 50 ms
DISCOVERY_S = 30.0  # by then a running node's diagnostics have been heard, or discovery failed
INPUT_TOPIC = "/camera/image_raw"


@dataclass
class ProcessUsage:
    """CPU ticks and wall time at one moment, to take CPU use over an interval."""

    ticks: int
    wall: float


def resident_mb(pid: int, field_name: str = "VmRSS") -> float:
    """VmRSS (or VmHWM: the peak) of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name} for process {pid}")


def usage(pid: int) -> ProcessUsage:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return ProcessUsage(int(fields[11]) + int(fields[12]), time.monotonic())  # utime + stime


def cpu_percent(before: ProcessUsage, after: ProcessUsage) -> float:
    """CPU use between two samples, in % of one core (200% is two cores busy)."""
    seconds = (after.ticks - before.ticks) / os.sysconf("SC_CLK_TCK")
    return 100.0 * seconds / max(after.wall - before.wall, 1e-9)


@dataclass
class NodeUnderTest:
    """A node process fed frames on /camera/image_raw and heard on `answers_topic` by a probe node of
    another process. Every answer's arrival time is recorded with its header stamp."""

    command: list[str]
    env: dict[str, str]
    answers_topic: str
    answer_type: Any
    frames: list[Any]  # sensor_msgs/Image, sent in turn
    domain: int
    log: Path | None = None
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (stamp, arrival), wall-clock s
    sent: list[float] = field(default_factory=list)  # stamps of the frames published
    diagnostics: dict[str, str] = field(default_factory=dict)  # the node's last "<node>: inference" status values

    def start(self, timeout_s: float = 300.0) -> float | None:
        """Start the process, publish a frame every 50 ms and return the seconds until the first answer
        (None if it never came or the process died)."""
        self._arrival_of: dict[float, float] = {}
        self._connect()
        started = time.monotonic()
        self._start_process()
        retried = False
        while not self.arrivals:
            elapsed = time.monotonic() - started
            if self.process.poll() is not None or elapsed > timeout_s:
                return None
            if elapsed > DISCOVERY_S and not retried and self._discovery_failed():
                # New participants on both sides connect (the node's participant may be the broken one).
                print(f"[bench] {self.answers_topic}: discovery failed after {elapsed:.0f} s, starting the node "
                      f"and the probe again", file=sys.stderr)
                stop(self.process)
                self._disconnect()
                self._connect()
                self._start_process()
                retried = True
            self.publish(self.frames[0])
            self.spin_for(FIRST_ANSWER_PERIOD_S)
        return time.monotonic() - started

    def _discovery_failed(self) -> bool:
        return discovery_failed(self.node, self.answers_topic.split("/")[1], self._heard_diagnostics)

    def _start_process(self) -> None:
        out = open(self.log, "w") if self.log else subprocess.DEVNULL
        self.process = start_process(self.command, {**self.env, "ROS_DOMAIN_ID": str(self.domain)},
                                     stdout=out, stderr=subprocess.STDOUT)

    def _connect(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        self._heard_diagnostics = False
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain)
        self.node = rclpy.create_node("bench_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.publisher = self.node.create_publisher(Image, INPUT_TOPIC, 10)
        self.node.create_subscription(self.answer_type, self.answers_topic, self._on_answer, QoSProfile(depth=100))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _disconnect(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def publish(self, image: Any) -> float:
        """Publish `image` stamped now (ROS time is wall-clock time here); its stamp in seconds."""
        now = time.time()
        image.header.stamp.sec, image.header.stamp.nanosec = int(now), int(now % 1 * 1e9)
        stamp = _seconds(image.header.stamp)
        self.sent.append(stamp)
        self.publisher.publish(image)
        return stamp

    def lockstep_latencies(self, count: int, timeout_s: float = 10.0) -> list[float]:
        """Send `count` frames one at a time, each once the previous one is answered (or `timeout_s`
        passed); seconds from each frame's stamp to the arrival of its own answer."""
        latencies = []
        for index in range(count):
            stamp = self.publish(self.frames[index % len(self.frames)])
            deadline = time.monotonic() + timeout_s
            while stamp not in self._arrival_of and time.monotonic() < deadline:
                self.executor.spin_once(timeout_sec=0.01)
            if stamp in self._arrival_of:
                latencies.append(self._arrival_of[stamp] - stamp)
        return latencies

    def throughput(self, rate_hz: float, seconds: float, drain_timeout_s: float = 10.0) -> dict[str, Any]:
        """Publish at `rate_hz` for `seconds`. Answers per second and their latency count only answers
        that arrived within the window (a node working through a queue afterwards gains nothing).
        Afterwards it waits for the answer to the last frame sent (a node serving the latest frame always
        answers it; at most `drain_timeout_s`): frames still unanswered then are dropped. Also the
        process's CPU use."""
        before_answers, before_sent, before_usage = len(self.arrivals), len(self.sent), usage(self.process.pid)
        period, sent = 1.0 / rate_hz, 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            self.publish(self.frames[sent % len(self.frames)])
            sent += 1
            next_at = start + sent * period
            while time.monotonic() < next_at:
                self.executor.spin_once(timeout_sec=max(0.0, next_at - time.monotonic()))
        window_end, after_usage = time.time(), usage(self.process.pid)
        last, deadline = self.sent[-1], time.monotonic() + drain_timeout_s
        while last not in self._arrival_of and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        ours = set(self.sent[before_sent:])  # a late answer to an earlier phase's frame does not count
        answers = [(stamp, arrival) for stamp, arrival in self.arrivals[before_answers:] if stamp in ours]
        in_window = [arrival - stamp for stamp, arrival in answers if arrival <= window_end]
        return {"input_hz": rate_hz, "sent": sent, "answered": len(answers), "dropped": max(sent - len(answers), 0),
                "output_hz": round(len(in_window) / seconds, 2),
                "latency_p50_ms": percentiles_ms(in_window)["p50_ms"],
                "cpu_percent": round(cpu_percent(before_usage, after_usage), 1)}

    def peak_rss_mb(self) -> float:
        return resident_mb(self.process.pid, "VmHWM")

    def close(self) -> int:
        """Stop the process (SIGINT) and the probe; the process's exit code."""
        code = stop(self.process) if hasattr(self, "process") else 0
        if hasattr(self, "executor"):
            self._disconnect()
        return code

    def _on_diagnostics(self, msg: Any) -> None:
        self._heard_diagnostics = True
        for status in msg.status:
            if status.name.endswith(": inference"):
                self.diagnostics = {value.key: value.value for value in status.values}

    def _on_answer(self, msg: Any) -> None:
        stamp, arrival = _seconds(msg.header.stamp), time.time()
        self.arrivals.append((stamp, arrival))
        self._arrival_of.setdefault(stamp, arrival)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=max(0.0, end - time.monotonic()))


def discovery_failed(probe: Any, name: str, heard_diagnostics: bool) -> bool:
    """Whether Fast DDS discovery between the rclpy node `probe` and the node `name` (in the root
    namespace) failed, one way or both (now and then with LARGE_DATA, more often on a loaded machine):
    the probe's graph lacks the node, or the node publishes diagnostics (every second) and none arrived."""
    from rclpy._rclpy_pybind11 import NodeNameNonExistentError

    try:
        published = {topic for topic, _ in probe.get_publisher_names_and_types_by_node(name, "/")}
    except NodeNameNonExistentError:  # not in the probe's graph
        return True
    return "/diagnostics" in published and not heard_diagnostics


def _seconds(stamp: Any) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def percentiles_ms(seconds: list[float]) -> dict[str, float | None]:
    """p50 / p90 / p99 of durations in seconds, as milliseconds."""
    if not seconds:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
    values = np.array(seconds) * 1000.0
    return {f"p{q}_ms": round(float(np.percentile(values, q)), 2) for q in (50, 90, 99)}
