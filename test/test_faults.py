"""Faults around a running node: its model file changing under it, an export killed half-way, and a
flood of bad frames."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time

from sensor_msgs.msg import Image

from conftest import CHECKPOINT, INT8_ONNX, asset
from node_harness import diagnostics_of, launched, next_domain, replay_and_collect, set_parameter
from reference import from_message
from vision_factory.tools.workspace import node_command, start_process


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


BAD_FRAMES = {  # one of each kind of rejection, and the text the node logs for it
    "unsupported encoding '16UC1'": Image(encoding="16UC1", width=8, height=8, step=16, data=bytes(128)),
    "empty image: 0x8": Image(encoding="bgr8", width=0, height=8, step=0, data=b""),
    "step 2 is smaller than width x channels = 24": Image(encoding="bgr8", width=8, height=8, step=2, data=bytes(16)),
    "data holds 10 bytes, expected step x height": Image(encoding="bgr8", width=8, height=8, step=24, data=bytes(10)),
}


def test_a_flood_of_mixed_bad_frames_names_every_kind_and_warns(workspace, frames, tmp_path) -> None:
    """Bad frames of four kinds, interleaved, for ~2 s: the log names each kind once (each has its own
    throttle), /diagnostics turns WARN with the latest reason, and good frames are still answered."""
    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        camera = probe.node.create_publisher(Image, "/camera/image_raw", 10)
        assert probe.spin_until(lambda: camera.get_subscription_count() > 0, 10)
        for _ in range(5):
            for index, frame in enumerate(BAD_FRAMES.values()):
                frame.header.stamp.nanosec = index  # distinct frames, not repeats of one
                camera.publish(frame)
                probe.spin(0.1)
        assert probe.spin_until(lambda: any(s["level"] == 1 and "rejected" in s["message"]
                                            for s in diagnostics_of(probe, "yolo_onnx")), 5)
        warning = [s for s in diagnostics_of(probe, "yolo_onnx") if s["level"] == 1][-1]
        answers = replay_and_collect(probe, "onnx", frames[:2])
    text = log.read_text()
    assert [text.count(reason) for reason in BAD_FRAMES] == [1] * len(BAD_FRAMES), text
    assert "frames in the last 5 s rejected: dropped a frame: " in warning["message"]
    assert any(reason in warning["message"] for reason in BAD_FRAMES) and len(answers) == 2


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
