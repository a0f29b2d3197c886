"""Managed (lifecycle) mode, driven as `ros2 lifecycle set` does: configure loads the model, activate
subscribes and publishes, deactivate stops, cleanup frees the model, shutdown finalizes it; a failed
configure is reported and the node waits for the next try."""
from __future__ import annotations

import gc
import signal
import time
import weakref
from pathlib import Path

import pytest

from conftest import CHECKPOINT, INT8_ONNX, asset

rclpy = pytest.importorskip("rclpy")
from lifecycle_msgs.msg import State  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from node_harness import (change_state, change_state_async, decoded, diagnostics_of, launched,  # noqa: E402
                          lifecycle_state, next_domain, replay_and_collect, results_of, set_parameter)
from vision_factory.generator import plan_package  # noqa: E402
from vision_factory.ros.node import InferenceNode  # noqa: E402

NODE = "/yolo_onnx"
INPUT = "/camera/image_raw"


def subscribers(probe) -> int:
    """Subscribers of the camera topic, once discovery has had a moment to settle."""
    probe.spin_until(lambda: False, 1.0)
    return probe.node.count_subscribers(INPUT)


def latest_state(probe) -> str:
    probe.spin_until(lambda: False, 1.2)  # one diagnostics period
    return diagnostics_of(probe, "yolo_onnx")[-1]["state"]


def test_a_managed_node_goes_through_its_lifecycle(workspace, frames, tmp_path: Path) -> None:
    with launched(workspace, "onnx", tmp_path, managed=True) as (process, probe, log):
        assert lifecycle_state(probe, NODE) == "unconfigured"
        assert latest_state(probe) == "unconfigured" and subscribers(probe) == 0

        assert change_state(probe, NODE, "configure")
        assert lifecycle_state(probe, NODE) == "inactive"
        assert probe.wait_for_message(f"{NODE}/label_info", 5)
        assert latest_state(probe) == "inactive" and subscribers(probe) == 0
        assert "ready: yolo on onnx" in log.read_text() and "listening on" not in log.read_text()

        assert change_state(probe, NODE, "activate")
        assert f"listening on {INPUT}" in log.read_text()
        answers = replay_and_collect(probe, "onnx", frames)
        assert [a.header.stamp for a in answers] == [decoded(m)[0].stamp for m in frames], log.read_text()
        assert any(a.detections for a in answers) and latest_state(probe) == "running"

        assert change_state(probe, NODE, "deactivate")
        assert subscribers(probe) == 0 and latest_state(probe) == "inactive"

        assert change_state(probe, NODE, "cleanup")
        assert lifecycle_state(probe, NODE) == "unconfigured" and latest_state(probe) == "unconfigured"

        assert change_state(probe, NODE, "unconfigured_shutdown")
        assert lifecycle_state(probe, NODE) == "finalized" and latest_state(probe) == "finalized"
        assert process.poll() is None
    assert process.returncode == 0, log.read_text()


def test_a_failed_configure_is_reported_and_the_node_waits(workspace, frames, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with launched(workspace, "onnx", tmp_path, managed=True, model=str(broken)) as (process, probe, log):
        assert not change_state(probe, NODE, "configure")
        assert lifecycle_state(probe, NODE) == "unconfigured" and process.poll() is None
        probe.spin_until(lambda: False, 1.2)
        status = diagnostics_of(probe, "yolo_onnx")[-1]
        assert status["level"] == 2 and "is not a readable ONNX model" in status["last_error"]
        assert "configure failed" in log.read_text()

        assert set_parameter(probe, NODE, "model", str(asset(INT8_ONNX)))[0]
        assert change_state(probe, NODE, "configure") and change_state(probe, NODE, "activate")
        assert len(replay_and_collect(probe, "onnx", frames[:2])) == 2
        assert len(results_of(probe, "onnx")) == 2
    assert process.returncode == 0, log.read_text()


def test_diagnostics_keep_coming_while_configure_exports(workspace, tmp_path: Path) -> None:
    """configure blocks the node's executor until a checkpoint is exported (seconds here, minutes for a
    TensorRT engine); /diagnostics reports the export meanwhile."""
    with launched(workspace, "onnx", tmp_path, managed=True, model=str(asset(CHECKPOINT))) as (process, probe, log):
        configured = change_state_async(probe, NODE, "configure")
        assert probe.spin_until(configured.done, 120)
        states = [status["state"] for status in diagnostics_of(probe, "yolo_onnx")]
    assert configured.result().success and "exporting" in states, (states, log.read_text())


def test_a_stop_during_the_configure_export_ends_it(workspace, tmp_path: Path) -> None:
    """SIGINT while configure exports: the node exits at once with 0, not when the export is done (for
    a TensorRT engine, minutes later), and the next launch exports afresh."""
    with launched(workspace, "onnx", tmp_path, managed=True, model=str(asset(CHECKPOINT))) as (process, probe, log):
        change_state_async(probe, NODE, "configure")
        assert probe.spin_until(lambda: any(s["state"] == "exporting" for s in diagnostics_of(probe, "yolo_onnx")), 60)
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        returncode = process.wait(30)
        took = time.monotonic() - stopped
    assert returncode == 0 and "ready:" not in log.read_text(), log.read_text()
    assert took < 5, f"exited {took:.1f} s after SIGINT"
    with launched(workspace, "onnx", tmp_path, managed=True, model=str(asset(CHECKPOINT))) as (process, probe, log):
        assert change_state(probe, NODE, "configure")
    assert "exporting" in log.read_text()


def test_cleanup_frees_the_model_session(tmp_path: Path) -> None:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=next_domain())
    plan = plan_package("yolo", "onnx", weights=str(asset(INT8_ONNX)))
    node = InferenceNode("yolo_onnx", "yolo", "onnx", plan.parameters, managed=True, context=context,
                         parameter_overrides=[Parameter("cache_dir", value=str(tmp_path / "cache"))])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        session = weakref.ref(node._live.current.session)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS and node.state() == "running"
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        deadline = time.monotonic() + 5
        while session() is not None and time.monotonic() < deadline:
            gc.collect()
        assert session() is None, gc.get_referrers(session())
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
