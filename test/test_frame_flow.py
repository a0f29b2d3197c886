"""Latest-frame processing, the frame statistics and the diagnostics rules built on them."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from vision_factory.frame_stats import FrameStats
from vision_factory.frame_worker import LatestFrameWorker
from vision_factory.live_model import RUNNING
from vision_factory.ros.diagnostics import SILENT_PUBLISHER_HINT, inference_status


def test_a_busy_worker_keeps_only_the_newest_frame_and_counts_the_rest() -> None:
    gate, seen = threading.Event(), []

    def process(items):
        seen.extend(items)
        if items == [0]:
            gate.wait(5)  # a slow first inference

    worker = LatestFrameWorker(process)
    worker.submit(0)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    for frame in range(1, 6):  # arrive while frame 0 is processed
        worker.submit(frame)
    gate.set()
    deadline = time.monotonic() + 5
    while seen[-1] != 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert seen == [0, 5] and worker.dropped == 4  # never a stale frame, never a queue


def test_a_fast_worker_drops_nothing() -> None:
    seen = []
    worker = LatestFrameWorker(seen.extend)
    for frame in range(20):
        worker.submit(frame)
        deadline = time.monotonic() + 5
        while len(seen) <= frame and time.monotonic() < deadline:
            time.sleep(0.001)
    worker.stop()
    assert seen == list(range(20)) and worker.dropped == 0


def test_cameras_are_served_in_turn_so_a_fast_one_cannot_starve_a_slow_one() -> None:
    """Camera 0 submits a frame every 1 ms, camera 1 every 20 ms, camera 2 once; each inference takes 5 ms."""
    events: list[tuple[str, int, int]] = []  # ("submit" | "start", camera, frame), in the order they happened
    lock = threading.Lock()

    def process(items: list[tuple[int, int]]) -> None:
        assert len(items) == 1  # batch_limit 1: one frame at a time
        with lock:
            events.append(("start", *items[0]))
        time.sleep(0.005)

    worker = LatestFrameWorker(process)
    stop = time.monotonic() + 1.0

    def camera(slot: int, period_s: float, frames: int) -> None:
        for index in range(frames):
            if time.monotonic() > stop:
                return
            with lock:
                events.append(("submit", slot, index))
                worker.submit((slot, index), slot)
            time.sleep(period_s)

    threads = [threading.Thread(target=camera, args=args) for args in ((0, 0.001, 10**6), (1, 0.02, 10**6), (2, 0, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.05)
    worker.stop()
    started = [(slot, index) for kind, slot, index in events if kind == "start"]
    assert [slot for slot, _ in started].count(2) == 1  # a camera that sent one frame is answered once
    slow = [index for slot, index in started if slot == 1]
    assert len(slow) >= 0.8 * 1.0 / 0.02  # the slow camera: nearly every frame it sent
    # Round robin: once a slow camera's frame waits, the fast camera starts at most one frame before it.
    for index in slow:
        submitted = events.index(("submit", 1, index))
        began = events.index(("start", 1, index))
        assert sum(kind == "start" and slot == 0 for kind, slot, _ in events[submitted:began]) <= 1, index
    assert worker.dropped_by_slot.get(0, 0) > 0 and worker.dropped == sum(worker.dropped_by_slot.values())
    fast = [index for slot, index in started if slot == 0]
    assert fast == sorted(fast)  # never an older frame after a newer one


def test_a_batching_model_takes_waiting_frames_of_several_cameras_together() -> None:
    gate, batches = threading.Event(), []

    def process(items: list) -> None:
        batches.append(items)
        if items == [("a", 0)]:
            gate.wait(5)  # busy while the three cameras send

    worker = LatestFrameWorker(process, batch_limit=lambda: 2)
    worker.submit(("a", 0), 0)
    deadline = time.monotonic() + 5
    while not batches and time.monotonic() < deadline:
        time.sleep(0.01)
    for slot in (0, 1, 2):
        worker.submit((slot, 1), slot)
    gate.set()
    deadline = time.monotonic() + 5
    while sum(map(len, batches)) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    # Slot 0 was served last: slots 1 and 2 come first, together, then slot 0.
    assert batches == [[("a", 0)], [(1, 1), (2, 1)], [(0, 1)]]


def wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_frames_in_flight_overlap_and_their_results_are_delivered_in_frame_order() -> None:
    """in_flight 2: frame 1 starts while frame 0 still runs and finishes first, yet is published second; while
    both run, newer frames replace each other in the slot as with one."""
    first_running, second_done = threading.Event(), threading.Event()
    running, most_running, delivered, lock = [0], [0], [], threading.Lock()

    def process(items: list[int]):
        frame = items[0]
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
        if frame == 0:
            first_running.set()
            second_done.wait(5)  # the slow one: still running when frame 1 has finished
        elif frame == 1:
            second_done.set()
        with lock:
            running[0] -= 1
        return lambda: delivered.append(frame)

    worker = LatestFrameWorker(process, in_flight=lambda: 2)
    worker.submit(0)
    assert first_running.wait(5)
    worker.submit(1)
    wait_until(lambda: len(delivered) == 2)
    assert delivered == [0, 1] and most_running[0] == 2
    worker.stop()


def test_with_every_request_busy_only_the_newest_frame_waits() -> None:
    gate, started, delivered = threading.Event(), [], []

    def process(items: list[int]):
        started.append(items[0])
        if items[0] < 2:
            gate.wait(5)
        return lambda: delivered.append(items[0])

    worker = LatestFrameWorker(process, in_flight=lambda: 2)
    worker.submit(0)
    wait_until(lambda: started == [0])
    worker.submit(1)
    wait_until(lambda: started == [0, 1])
    for frame in range(2, 7):  # both requests busy: these replace each other
        worker.submit(frame)
    time.sleep(0.05)
    assert started == [0, 1]  # no third frame runs beside two
    gate.set()
    wait_until(lambda: len(delivered) == 3)
    worker.stop()
    assert started == [0, 1, 6] and delivered == [0, 1, 6] and worker.dropped == 4


def test_one_in_flight_never_runs_two_frames_at_once() -> None:
    running, most_running, seen = [0], [0], []

    def process(items: list[int]):
        running[0] += 1
        most_running[0] = max(most_running[0], running[0])
        time.sleep(0.002)
        running[0] -= 1
        seen.extend(items)

    worker = LatestFrameWorker(process)
    for frame in range(50):
        worker.submit(frame)
        time.sleep(0.0005)
    wait_until(lambda: seen and seen[-1] == 49)
    worker.stop()
    assert most_running[0] == 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rates_and_percentiles_over_the_window() -> None:
    clock = Clock()
    stats = FrameStats(window_s=5.0, clock=clock)
    for i in range(100):
        clock.now += 0.05  # 20 Hz for 5 s
        stats.received()
        stats.published(latency_s=0.010 + (0.090 if i == 99 else 0.0), inference_s=0.008, stamp_latency_s=0.030)
    stats.rejected("dropped a frame: empty image: 0x0")
    snap = stats.snapshot()
    assert snap["input_hz"] == pytest.approx(20, abs=0.3) and snap["output_hz"] == pytest.approx(20, abs=0.3)
    assert snap["latency_p50_ms"] == pytest.approx(10.0) and snap["latency_p99_ms"] > 10.0
    assert snap["inference_p50_ms"] == pytest.approx(8.0) and snap["stamp_latency_p50_ms"] == pytest.approx(30.0)
    assert (snap["received_total"], snap["published_total"], snap["rejected_total"]) == (100, 100, 1)
    clock.now += 10  # silence: the window empties, totals stay
    snap = stats.snapshot()
    assert snap["input_hz"] == 0 and snap["latency_p50_ms"] is None and snap["seconds_since_input"] == 10.0


def test_rejected_and_lost_frames_are_counted_over_the_window_with_the_latest_reason() -> None:
    clock = Clock()
    stats = FrameStats(window_s=5.0, clock=clock)
    stats.rejected("dropped a frame: unsupported encoding '16UC1'")
    clock.now += 1
    stats.rejected("dropped a frame: empty image: 0x0")
    stats.lost(3)
    snap = stats.snapshot()
    assert (snap["rejected_recent"], snap["last_rejection"]) == (2, "dropped a frame: empty image: 0x0")
    assert (snap["lost_recent"], snap["lost_total"]) == (3, 3)
    clock.now += 10
    snap = stats.snapshot()
    assert (snap["rejected_recent"], snap["last_rejection"], snap["lost_recent"]) == (0, "", 0)
    assert (snap["rejected_total"], snap["lost_total"]) == (2, 3)


def running_live(last_error: str = "") -> SimpleNamespace:
    runner = SimpleNamespace(session=SimpleNamespace(active="CPUExecutionProvider"),
                             manifest=SimpleNamespace(name="yolo"),
                             artifacts={"model": SimpleNamespace(path="/w.onnx", exported=False)})
    return SimpleNamespace(current=runner, state=RUNNING, building="", last_error=last_error)


@pytest.mark.parametrize("since_input, p99, last_error, level, text", [
    (0.5, 40.0, "", DiagnosticStatus.OK, "running"),
    (7.0, 40.0, "", DiagnosticStatus.WARN, "running: no input for 7 s"),
    (0.5, 1500.0, "", DiagnosticStatus.WARN, "running: p99 latency 1500 ms over 1000 ms"),
    (0.5, 40.0, "RuntimeError: boom", DiagnosticStatus.WARN, "running: last rebuild failed"),
])
def test_diagnostics_rules(since_input, p99, last_error, level, text) -> None:
    stats = {**FrameStats().snapshot(), "seconds_since_input": since_input, "latency_p99_ms": p99}
    live = running_live(last_error)
    status = inference_status("yolo_onnx", "onnx", live.state, live, stats, dropped=3,
                              no_input_s=5.0, latency_ms=1000.0)
    values = {kv.key: kv.value for kv in status.values}
    assert (status.level, status.message) == (level, text)
    assert values["dropped_frames"] == "3" and values["active"] == "CPUExecutionProvider"
    assert {"input_hz", "output_hz", "latency_p50_ms", "latency_p99_ms", "inference_p50_ms",
            "stamp_latency_p99_ms", "last_error", "state", "model"} <= set(values)


@pytest.mark.parametrize("stats, text", [
    ({"seconds_since_input": 7.0, "matched_publishers": 1},
     f"running: no input for 7 s from 1 matched publisher(s): {SILENT_PUBLISHER_HINT}"),
    ({"lost_recent": 12}, f"running: 12 frames lost in transport in the last 5 s: {SILENT_PUBLISHER_HINT}"),
    ({"received_recent": 86, "rejected_recent": 58, "last_rejection": "dropped a frame: empty image: 0x0"},
     "running: 58 of 86 frames in the last 5 s rejected: dropped a frame: empty image: 0x0"),
    ({"received_recent": 100, "rejected_recent": 2, "last_rejection": "dropped a frame: empty image: 0x0"},
     "running"),  # under REJECTED_SHARE: a stray bad frame is an error line, not a warning
    ({"received_recent": 30, "prompt_publishers": 0},
     "running: frames arrive but no publisher of prompts is connected: frames wait for prompts that never come "
     "(check prompts_topic)"),
    ({"received_recent": 30, "prompt_publishers": 1}, "running"),
])
def test_diagnostics_say_why_frames_do_not_become_results(stats, text) -> None:
    """A matched publisher whose frames never arrive, frames lost in transport, a flood of rejected frames,
    and a prompted node (SAM) that hears frames but no prompt publisher each make the node WARN with the
    cause, not report a healthy "running"."""
    live = running_live()
    status = inference_status("yolo_onnx", "onnx", live.state, live, {**FrameStats().snapshot(), **stats},
                              dropped=0, no_input_s=5.0, latency_ms=1000.0)
    level = DiagnosticStatus.OK if text == "running" else DiagnosticStatus.WARN
    assert (status.level, status.message) == (level, text)
