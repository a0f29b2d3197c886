"""Input QoS against real publishers, across processes. The default, auto, follows the cameras: reliable
while every publisher is, best effort when any is, switching when they change; a fixed `reliable` does
not connect to a best-effort camera. Frames of every size the README promises (4K, 8K) arrive from
either kind of camera, and where a camera's transport loses them, /diagnostics says so and names the
setting that fixes it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from node_harness import decoded, diagnostics_of, launched, replay_and_collect, results_of
from vision_factory.tools.bag_replay import ReplayProbe

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TOPIC = "/camera/image_raw"
LARGE = {"4K": (3840, 2160), "8K": (7680, 4320)}
WARN = 1


def chosen(reliability: str) -> str:
    """What the node logs when auto subscribes with `reliability`."""
    return f"input QoS on {TOPIC}: {reliability}, matching its publishers"


@pytest.mark.parametrize("camera_qos, matched", [(qos_profile_sensor_data, "best_effort"), (RELIABLE, "reliable")])
def test_auto_matches_the_camera(workspace, frames, tmp_path, camera_qos, matched) -> None:
    with launched(workspace, "onnx", tmp_path) as (process, probe, log):  # input_reliability: auto, the default
        answers = replay_and_collect(probe, "onnx", frames, qos=camera_qos)
    assert len(answers) == len(frames)
    assert chosen(matched) in log.read_text()


def test_auto_follows_a_best_effort_camera_that_joins_a_reliable_one(workspace, frames, tmp_path) -> None:
    """A reliable camera first: auto subscribes reliable. A best-effort one joins (a second camera, a
    driver restarted with the sensor-data profile): auto goes back to best effort and hears both."""
    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        first = replay_and_collect(probe, "onnx", frames[:2], qos=RELIABLE)
        assert probe.spin_until(lambda: chosen("reliable") in log.read_text(), 10)
        second = replay_and_collect(probe, "onnx", frames[2:], qos=qos_profile_sensor_data)
        # The switch back is logged by the node's process: its line can reach the file after the answers.
        switched = probe.spin_until(lambda: chosen("best_effort") in log.read_text().split(chosen("reliable"))[-1], 10)
    assert len(first) == 2 and len(second) == len(frames) - 2
    assert switched, log.read_text()


def test_reliable_input_does_not_hear_a_best_effort_camera(workspace, frames, tmp_path) -> None:
    with launched(workspace, "onnx", tmp_path, input_reliability="reliable") as (process, probe, log):
        camera = probe.node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
        probe.spin_until(lambda: False, 2.0)  # discovery: the endpoints see each other, and do not match
        for frame in frames:
            camera.publish(frame.rawdata)
            probe.spin(0.2)
        probe.spin_until(lambda: False, 1.0)
        assert camera.get_subscription_count() == 0 and results_of(probe, "onnx") == []


def large_frame(frame, size: tuple[int, int]) -> Image:
    """The recorded frame scaled to `size` (width, height), as a bgr8 Image."""
    header, image = decoded(frame)
    pixels = np.ascontiguousarray(cv2.resize(image, size))
    return Image(header=header, height=size[1], width=size[0], encoding="bgr8", step=size[0] * 3,
                 data=pixels.tobytes())


@pytest.mark.parametrize("size", LARGE)
@pytest.mark.parametrize("camera_qos, matched", [(qos_profile_sensor_data, "best_effort"), (RELIABLE, "reliable")],
                         ids=["best_effort", "reliable"])
def test_4k_and_8k_frames_arrive_with_the_default_qos(workspace, frames, tmp_path, size, camera_qos,
                                                      matched) -> None:
    """Each frame published once and given 15 s: a reliable camera's all arrive; a best-effort camera
    (with the socket buffers scripts/bootstrap sets) loses some, so most must arrive."""
    message, count = large_frame(frames[0], LARGE[size]), 4
    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        camera = probe.node.create_publisher(Image, TOPIC, camera_qos)
        assert probe.spin_until(lambda: camera.get_subscription_count() > 0 and chosen(matched) in log.read_text(), 15)
        for index in range(count):
            message.header.stamp.sec = 1000 + index
            camera.publish(message)
            probe.spin_until(lambda: any(r.header.stamp.sec == 1000 + index for r in results_of(probe, "onnx")), 15)
        stamps = [r.header.stamp.sec for r in results_of(probe, "onnx")]
    assert stamps == sorted(set(stamps)) and set(stamps) <= set(range(1000, 1000 + count))
    assert len(stamps) == count if matched == "reliable" else len(stamps) >= count // 2, (stamps, log.read_text())


def test_a_camera_whose_large_frames_are_lost_is_reported(workspace, frames, tmp_path, monkeypatch) -> None:
    """A best-effort 8K camera with Fast DDS's LARGE_DATA transports and default socket buffers: its frames
    are lost on the way (measured: none of 30 arrived), and the node says so in /diagnostics with the
    setting to change."""
    message = large_frame(frames[0], LARGE["8K"])
    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")  # read when the camera's participant starts
        camera = ReplayProbe({}, domain_id=probe.context.get_domain_id(), name="camera")
        try:
            publisher = camera.node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
            assert camera.spin_until(lambda: publisher.get_subscription_count() > 0, 15)

            def warned() -> list[str]:
                return [s["message"] for s in diagnostics_of(probe, "yolo_onnx")
                        if s["level"] == WARN and "sockets_size=64MB" in s["message"]]

            for _ in range(120):  # at most 30 s, at 4 Hz
                publisher.publish(message)
                probe.spin_until(lambda: False, 0.25)
                if warned():
                    break
        finally:
            camera.close()
    assert warned(), [{k: s[k] for k in ("message", "received_total", "lost_total", "matched_publishers", "seconds_since_input")} for s in diagnostics_of(probe, "yolo_onnx")[-3:]]
    assert "frames lost in transport" in warned()[-1] or "matched publisher" in warned()[-1]
