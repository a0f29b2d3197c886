"""LiveModel: background builds, atomic swaps between frames, failures that keep the old session;
and the diagnostics status it feeds."""
from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import pytest

from vision_factory.errors import ConfigError
from vision_factory.live_model import ERROR, EXPORTING, LOADING, RUNNING, STARTING, LiveModel

LOG = logging.getLogger("live")


class Builds:
    """A build function whose builds block until released, recording what they were asked for."""

    def __init__(self) -> None:
        self.asked: list[dict] = []
        self.gates: dict[str, threading.Event] = {}
        self.fail: set[str] = set()
        self.export: set[str] = set()

    def __call__(self, values, frame_hw, on_export):
        name = values["model"]
        self.asked.append(values)
        if name in self.export:
            on_export()
        self.gates.setdefault(name, threading.Event()).wait(10)
        if name in self.fail:
            raise ConfigError(f"model file '{name}' does not exist")
        if name == "crash":
            raise RuntimeError("out of memory")
        return SimpleNamespace(name=name, session=SimpleNamespace(active="cpu"),
                               manifest=SimpleNamespace(name="yolo"),
                               artifacts={"model": SimpleNamespace(path=name, exported=False)})

    def release(self, name: str) -> None:
        self.gates.setdefault(name, threading.Event()).set()


def wait(condition, timeout=5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def setup():
    builds, notified = Builds(), []
    live = LiveModel(builds, lambda: notified.append(1), LOG)
    return builds, live, notified


def test_first_build_runs_in_the_background(setup) -> None:
    builds, live, notified = setup
    assert live.state == STARTING and live.current is None
    live.request({"model": "a"})
    wait(lambda: builds.asked)
    assert live.state == LOADING and live.busy() and live.current is None
    builds.release("a")
    wait(lambda: notified)
    assert live.current.name == "a" and live.state == RUNNING and live.builds == 1 and live.last_error == ""
    wait(lambda: not live.busy())


def test_state_says_exporting_during_a_first_launch_export(setup) -> None:
    builds, live, notified = setup
    builds.export.add("a")
    live.request({"model": "a"})
    wait(lambda: live.state == EXPORTING)
    builds.release("a")
    wait(lambda: live.state == RUNNING)


def test_frames_use_the_old_runner_until_the_new_one_is_complete(setup) -> None:
    builds, live, notified = setup
    builds.release("a")
    live.request({"model": "a"})
    wait(lambda: live.current is not None)
    builds.export.add("b")
    live.request({"model": "b"})
    wait(lambda: live.building == EXPORTING)
    frame_runner = live.current  # what a frame takes at its start
    assert frame_runner.name == "a" and live.state == RUNNING
    builds.release("b")
    wait(lambda: live.current.name == "b")
    assert frame_runner.name == "a" and live.building == ""  # that frame kept its runner to the end


def test_requests_during_a_build_coalesce_to_the_newest(setup) -> None:
    builds, live, notified = setup
    live.request({"model": "a"})
    wait(lambda: builds.asked)
    live.request({"model": "b"})
    live.request({"model": "c"})
    for name in "abc":
        builds.release(name)
    wait(lambda: live.builds == 2)
    assert [v["model"] for v in builds.asked] == ["a", "c"] and live.current.name == "c"


@pytest.mark.parametrize("failure, reported", [("missing", "model file 'missing' does not exist"),
                                               ("crash", "RuntimeError: out of memory")])
def test_a_failed_rebuild_keeps_serving_and_is_reported(setup, caplog, failure, reported) -> None:
    builds, live, notified = setup
    builds.release("a")
    live.request({"model": "a"})
    wait(lambda: live.current is not None)
    builds.fail.add("missing")
    builds.release(failure)
    live.request({"model": failure})
    wait(lambda: live.builds == 2)
    assert live.current.name == "a" and live.state == RUNNING and live.last_error == reported
    assert "rebuilding the model session failed" in caplog.text and "still serving" in caplog.text
    builds.release("b")
    live.request({"model": "b"})
    wait(lambda: live.builds == 3)
    assert live.current.name == "b" and live.last_error == ""


def test_a_failed_first_build_is_an_error_state_left_to_the_owner(setup, caplog) -> None:
    builds, live, notified = setup
    builds.fail.add("missing")
    builds.release("missing")
    live.request({"model": "missing"})
    wait(lambda: live.builds == 1)
    assert live.state == ERROR and live.current is None and "does not exist" in live.last_error
    assert caplog.text == ""  # the node prints the one line, not the runner


def test_diagnostics_levels_follow_the_state(setup) -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    from vision_factory.frame_stats import FrameStats
    from vision_factory.ros.diagnostics import inference_status

    def status(live):
        return inference_status("yolo_onnx", "onnx", live.state, live, FrameStats().snapshot(), 0, 5.0, 1000.0)

    builds, live, notified = setup
    assert (status(live).level, status(live).message) == (DiagnosticStatus.OK, "starting")
    builds.release("a")
    live.request({"model": "a"})
    wait(lambda: live.current is not None)
    values = {kv.key: kv.value for kv in status(live).values}
    assert values["state"] == "running" and values["active"] == "cpu" and values["backend"] == "onnx"
    builds.release("crash")
    live.request({"model": "crash"})
    wait(lambda: live.builds == 2)
    assert status(live).level == DiagnosticStatus.WARN and "last rebuild failed" in status(live).message
    assert {kv.key: kv.value for kv in status(live).values}["last_error"] == "RuntimeError: out of memory"
    failed = LiveModel(builds, lambda: None, LOG)
    builds.fail.add("missing")
    builds.release("missing")
    failed.request({"model": "missing"})
    wait(lambda: failed.builds == 1)
    assert status(failed).level == DiagnosticStatus.ERROR
