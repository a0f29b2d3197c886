"""Faults around a running node: its model file changing under it, and an export killed half-way."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time

from conftest import CHECKPOINT, INT8_ONNX, asset
from node_harness import diagnostics_of, launched, next_domain, replay_and_collect, set_parameter
from reference import from_message
from vision_factory.workspace import node_command, start_process


def test_the_model_file_deleted_or_corrupted_while_running(workspace, frames, tmp_path) -> None:
    weights = tmp_path / "yolov8n.onnx"
    shutil.copyfile(asset(INT8_ONNX), weights)
    with launched(workspace, "onnx", tmp_path, model=str(weights)) as (process, probe, log):
        before = replay_and_collect(probe, "onnx", frames[:2])

        weights.write_bytes(b"\x00" * 1000)  # corrupted: the session in memory keeps working
        assert [from_message(a) for a in replay_and_collect(probe, "onnx", frames[:2])] == \
            [from_message(a) for a in before]
        assert set_parameter(probe, "/yolo_onnx", "imgsz", 320) == (True, "")  # a change that reloads it
        assert probe.spin_until(lambda: "rebuilding the model session failed" in log.read_text(), 30)

        weights.unlink()  # deleted: a reload says so, the old session serves on
        assert set_parameter(probe, "/yolo_onnx", "imgsz", 640) == (True, "")
        assert probe.spin_until(lambda: "does not exist; still serving" in log.read_text(), 30)
        after = replay_and_collect(probe, "onnx", frames[:2])
        probe.spin_until(lambda: False, 1.2)
        status = diagnostics_of(probe, "yolo_onnx")[-1]
    text = log.read_text()
    assert "is not a readable ONNX model" in text
    assert [from_message(a) for a in after] == [from_message(a) for a in before]
    assert status["level"] == 1 and status["state"] == "running" and "does not exist" in status["last_error"]


def test_an_export_killed_half_way_is_rebuilt_on_the_next_launch(workspace, frames, tmp_path) -> None:
    ws, env = workspace
    cache = tmp_path / "cache"
    command = node_command(ws, "yolo_openvino", "yolo_openvino",
                           {"model": str(asset(CHECKPOINT)), "cache_dir": str(cache)})
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        process = start_process(command, {**env, "ROS_DOMAIN_ID": str(next_domain())}, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "first launch with these weights: exporting" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = list(cache.glob(".tmp-*"))
    assert partial, "the export left nothing half-written to recover from"
    assert not [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]  # no entry

    with launched(workspace, "openvino", tmp_path, model=str(asset(CHECKPOINT)), cache_dir=str(cache)) as (
            process, probe, relaunch_log):
        answers = replay_and_collect(probe, "openvino", frames[:2])
    text = relaunch_log.read_text()
    assert "left by an export that did not finish" in text and "exported " in text
    assert len(answers) == 2 and not list(cache.glob(".tmp-*"))
