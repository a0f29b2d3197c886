"""The generated depth_anything nodes, built with colcon and run as processes on the recorded bag: REP 118
images, one per frame with the frame's header, the metric / relative topic split, camera_info passed
through, and live switching between checkpoints."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("transformers", reason="the depth models load transformers checkpoints")
from node_harness import decoded, image_messages, launched, replay_and_collect, set_parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from vision_factory.loaded_model import load_default_model  # noqa: E402
from vision_factory.tools.stand_in_models import depth_anything_checkpoint  # noqa: E402
from vision_factory.tools.workspace import stop  # noqa: E402

NODE = "/depth_anything_onnx"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("depth_node")
    return {"relative": depth_anything_checkpoint(folder / "relative"),
            "metric": depth_anything_checkpoint(folder / "metric", metric=True, seed=1)}


def values_of(image) -> np.ndarray:
    """The float32 (H, W) array of a 32FC1 sensor_msgs/Image."""
    assert image.encoding == "32FC1" and image.step == image.width * 4
    dtype = np.dtype(np.float32).newbyteorder(">" if image.is_bigendian else "<")
    return np.frombuffer(bytes(image.data), dtype).reshape(image.height, image.width)


def test_bag_replay_gives_one_rep118_image_per_frame(workspace, frames, checkpoints, tmp_path) -> None:
    """Relative checkpoint, onnx, input size from the camera (the default): prepared for 640x480 at start,
    rebuilt for the bag's 960x540 frames when the first one arrives (which waits for it), then each frame
    answered on ~/inverse_depth_relative with its stamp and frame_id, at its size, finite, equal to what the
    runner computes for that frame size; nothing on ~/depth; a debug image per frame. A camera that
    switches to 640x480 is answered at that size too, by the export made at start."""
    small = image_messages([cv2.resize(decoded(frame)[1], (640, 480), interpolation=cv2.INTER_AREA)
                            for frame in frames[:2]], spacing_s=0.2)
    with launched(workspace, "onnx", tmp_path, family="depth_anything", model=str(checkpoints["relative"]),
                  publish_debug_image=True) as (process, probe, log):
        answers = replay_and_collect(probe, "onnx", frames, family="depth_anything")
        probe.spin_until(lambda: len(probe.outputs[f"{NODE}/debug_image"]) >= len(frames), 10)
        debug, metric = list(probe.outputs[f"{NODE}/debug_image"]), probe.outputs[f"{NODE}/depth"]
        answers_640 = replay_and_collect(probe, "onnx", small, family="depth_anything")
    assert stop(process) == 0
    text = log.read_text()
    assert "exporting relative for the onnx backend" in text
    assert ("frames are 960x540, the model was prepared for 640x480: rebuilding it with input_width 924 (was 686)"
            in text), text
    assert "frames are 640x480, the model was prepared for 960x540: rebuilding it with input_width 686 (was 924)" in text
    assert len(answers) == len(frames) == len(debug) and metric == []
    runner = load_default_model("depth_anything", "onnx", checkpoints["relative"], tmp_path / "cache",
                                frame_hw=(540, 960))
    for answer, frame in zip(answers, frames):
        header, image = decoded(frame)
        assert (answer.header.stamp, answer.header.frame_id) == (header.stamp, header.frame_id)
        assert (answer.height, answer.width) == image.shape[:2]
        depth = values_of(answer)
        assert np.isfinite(depth).all() and depth.std() > 0
        assert np.allclose(depth, runner.model(image).values, atol=1e-6)
    assert (debug[0].encoding, debug[0].width, debug[0].height) == ("bgr8", 960, 540)
    assert [(a.width, a.height, a.header.stamp.sec, a.header.stamp.nanosec) for a in answers_640] == [
        (640, 480, 1, 0), (640, 480, 1, 200_000_000)]


def test_metric_depth_on_depth_with_camera_info_and_live_switching(workspace, frames, checkpoints, tmp_path) -> None:
    """cuda (PyTorch, on the CPU here): a metric checkpoint publishes metres on ~/depth, and the camera's
    CameraInfo comes out on ~/camera_info with each depth image's header. `ros2 param set model` to the
    relative checkpoint moves the output to ~/inverse_depth_relative without a restart."""
    node = "/depth_anything_cuda"
    camera_info = CameraInfo(width=960, height=540, distortion_model="plumb_bob", k=[500.0, 0, 480, 0, 500, 270, 0, 0, 1])
    camera_info.header.frame_id = "camera"
    with launched(workspace, "cuda", tmp_path, family="depth_anything", model=str(checkpoints["metric"]),
                  device="cpu", camera_info_topic="/camera/camera_info") as (process, probe, log):
        publisher = probe.node.create_publisher(CameraInfo, "/camera/camera_info", 10)
        probe.spin_until(lambda: publisher.get_subscription_count() > 0, 10)
        publisher.publish(camera_info)  # a camera driver sends its CameraInfo before and with every frame
        probe.spin(0.5)
        probe.replay("/camera/image_raw", frames, on_frame=lambda _: publisher.publish(camera_info),
                     answered=lambda count: len(probe.outputs[f"{node}/depth"]) >= count)
        probe.spin_until(lambda: min(len(probe.outputs[f"{node}/{topic}"]) for topic in ("depth", "camera_info"))
                         >= len(frames), 30)
        metric, infos = list(probe.outputs[f"{node}/depth"]), list(probe.outputs[f"{node}/camera_info"])
        assert set_parameter(probe, node, "model", str(checkpoints["relative"])) == (True, "")
        assert probe.spin_until(lambda: f"weights {checkpoints['relative']}" in log.read_text(), 120)
        relative = replay_and_collect(probe, "cuda", frames[:2], family="depth_anything")
    assert len(metric) == len(frames) and len(relative) == 2
    assert [(m.header.stamp, m.header.frame_id) for m in metric] == [(i.header.stamp, i.header.frame_id) for i in infos]
    assert infos[0].k[0] == 500.0 and infos[0].width == 960
    assert all(np.isfinite(values_of(m)).all() and values_of(m).min() >= 0 for m in metric)
    assert len(probe.outputs[f"{node}/depth"]) == len(frames)  # nothing more on ~/depth after the switch
