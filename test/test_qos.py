"""Input QoS against real publishers: `auto` matches whichever reliability the camera offers; a fixed
`reliable` does not connect to a best-effort camera (the case `auto` exists for)."""
from __future__ import annotations

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from node_harness import launched, replay_and_collect, results_of

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.mark.parametrize("camera_qos, matched", [(qos_profile_sensor_data, "best_effort"), (RELIABLE, "reliable")])
def test_auto_matches_the_camera(workspace, frames, tmp_path, camera_qos, matched) -> None:
    with launched(workspace, "onnx", tmp_path, input_reliability="auto") as (process, probe, log):
        answers = replay_and_collect(probe, "onnx", frames, qos=camera_qos)
    assert len(answers) == len(frames)
    assert f"input QoS matched to the publisher on /camera/image_raw: {matched}" in log.read_text()


def test_reliable_input_does_not_hear_a_best_effort_camera(workspace, frames, tmp_path) -> None:
    with launched(workspace, "onnx", tmp_path, input_reliability="reliable") as (process, probe, log):
        camera = probe.node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        probe.spin_until(lambda: False, 2.0)  # discovery: the endpoints see each other, and do not match
        for frame in frames:
            camera.publish(frame.rawdata)
            probe.spin(0.2)
        probe.spin_until(lambda: False, 1.0)
        assert camera.get_subscription_count() == 0 and results_of(probe, "onnx") == []
