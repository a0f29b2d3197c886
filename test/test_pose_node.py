"""The generated rtmpose nodes, built with colcon beside vision_factory_msgs and run as processes: the
known-answer pose model through the node, the real person detector on COCO images, onnx / openvino parity
and the recorded bag replayed, one pose message per frame."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import ASSETS, IMAGES, asset
from reference import annotated_people, iou

pytest.importorskip("rclpy")
pytest.importorskip("rtmlib", reason="the rtmpose model uses rtmlib's processing")
pytest.importorskip("onnx")
from node_harness import (decoded, diagnostics_of, image_messages, launched, replay_and_collect,  # noqa: E402
                          set_parameter)

from vision_factory.ros import messages  # noqa: E402
from vision_factory.tools.stand_in_models import (KEYPOINTS, PEAK_X, PEAK_Y, expected_keypoints,  # noqa: E402
                                            fixed_boxes_detector, known_answer_pose_model, peak_bins)
from vision_factory.tools.workspace import stop  # noqa: E402

DETECTOR = ASSETS / "models" / "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx"
COCO = IMAGES / "coco_mmpose"
# Boxes the fixed detector returns for a 640x480 frame (letterbox ratio 1), and their scores.
BOXES = np.array([[200, 100, 300, 400], [50, 200, 450, 300], [0, 0, 80, 120], [560, 380, 640, 480],
                  [310.5, 20.25, 333.75, 61.5]], np.float32)
SCORES = np.array([0.95, 0.9, 0.85, 0.8, 0.7], np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    folder, bins = tmp_path_factory.mktemp("pose_node"), peak_bins()
    return {"pose": known_answer_pose_model(folder / "rtmpose.onnx", bins), "bins": bins,
            "fixed_detector": fixed_boxes_detector(folder / "detector.onnx", BOXES, SCORES)}


def boxes_of(answer) -> np.ndarray:
    """x1, y1, x2, y2 of each pose's bbox in a KeypointPoseArray."""
    return messages.boxes_xyxy(p.bbox for p in answer.poses)


def keypoints_of(answer) -> np.ndarray:
    """(N, K, 3) x, y, score."""
    return np.array([[[k.x, k.y, k.score] for k in p.keypoints] for p in answer.poses]).reshape(-1, KEYPOINTS, 3)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_every_keypoint_lands_where_the_box_maps_its_peak(workspace, models, tmp_path, backend) -> None:
    """Known answer through the node: boxes as the detector gave them, every keypoint within 1 px of where
    the box's affine transform maps the SimCC peak, skeleton on the latched topic, input header copied."""
    frames = image_messages([np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)])
    with launched(workspace, backend, tmp_path, family="rtmpose", model=str(models["pose"]),
                  detector_model=str(models["fixed_detector"])) as (process, probe, log):
        answer, = replay_and_collect(probe, backend, frames, family="rtmpose")
        skeleton, = probe.outputs[f"/rtmpose_{backend}/skeleton"]
    assert (answer.header.stamp.sec, answer.header.frame_id) == (1, "camera")
    assert np.abs(boxes_of(answer) - BOXES).max() < 1e-3
    assert np.allclose([p.score for p in answer.poses], SCORES) and all(p.id == "" for p in answer.poses)
    found = keypoints_of(answer)
    for box, keypoints in zip(BOXES.astype(np.float64), found):
        assert np.abs(keypoints[:, :2] - expected_keypoints(box, models["bins"])).max() <= 1.0, box
    assert np.allclose(found[:, :, 2], (PEAK_X + PEAK_Y) / 2)
    assert skeleton.name == "coco17" and len(skeleton.keypoint_names) == KEYPOINTS and len(skeleton.edge_start) == 19
    assert skeleton.keypoint_names[skeleton.edge_start[0]] == "left_ankle"


def test_the_real_detector_finds_the_annotated_people_through_the_node(workspace, models, tmp_path) -> None:
    """COCO images through rtmpose_onnx with the real YOLOX person detector: every person with >= 10
    annotated keypoints has a published pose box with IoU >= 0.7."""
    truth = json.loads(asset(COCO / "test_coco.json").read_text())
    images = [cv2.imread(str(COCO / info["file_name"])) for info in truth["images"]]
    with launched(workspace, "onnx", tmp_path, family="rtmpose", model=str(models["pose"]),
                  detector_model=str(asset(DETECTOR))) as (process, probe, log):
        answers = replay_and_collect(probe, "onnx", image_messages(images), family="rtmpose")
    assert len(answers) == len(images)
    checked = 0
    for info, answer in zip(truth["images"], answers):
        for person in annotated_people(truth, info["id"]):
            best = max((iou(person, box) for box in boxes_of(answer)), default=0.0)
            assert best >= 0.7, (info["file_name"], person, best)
            checked += 1
    assert checked == 12


def test_bag_replay_gives_one_pose_message_per_frame_and_onnx_matches_openvino(workspace, frames, models,
                                                                                 tmp_path) -> None:
    """The recorded street bag through both built packages: one KeypointPoseArray per frame with the
    frame's stamp and frame_id, people found in every frame, a debug image per frame, and the two backends
    agree on boxes and keypoints within 1 px."""
    results = {}
    for backend in ("onnx", "openvino"):
        with launched(workspace, backend, tmp_path, family="rtmpose", model=str(models["pose"]),
                      detector_model=str(asset(DETECTOR)), publish_debug_image=True) as (process, probe, log):
            results[backend] = replay_and_collect(probe, backend, frames, family="rtmpose")
            probe.spin_until(lambda: len(probe.outputs[f"/rtmpose_{backend}/debug_image"]) >= len(frames), 10)
            debug = probe.outputs[f"/rtmpose_{backend}/debug_image"]
        assert stop(process) == 0
        assert len(results[backend]) == len(frames) == len(debug)
        for answer, frame in zip(results[backend], frames):
            header, _ = decoded(frame)
            assert (answer.header.stamp, answer.header.frame_id) == (header.stamp, header.frame_id)
            assert len(answer.poses) >= 3  # a street scene with people: the comparison is not vacuous
    for onnx_answer, openvino_answer in zip(results["onnx"], results["openvino"]):
        assert len(onnx_answer.poses) == len(openvino_answer.poses)
        assert np.abs(boxes_of(onnx_answer) - boxes_of(openvino_answer)).max() <= 1.0
        onnx_keypoints, openvino_keypoints = keypoints_of(onnx_answer), keypoints_of(openvino_answer)
        assert (np.isnan(onnx_keypoints) == np.isnan(openvino_keypoints)).all()
        assert np.nanmax(np.abs(onnx_keypoints[..., :2] - openvino_keypoints[..., :2])) <= 1.0


def test_detector_and_limits_switch_live(workspace, frames, models, tmp_path) -> None:
    """`ros2 param set`: a new detector file rebuilds the sessions while the node runs; a missing one is
    refused with the reason; max_poses and the detector threshold apply to the next frame; a frame with
    no one in it still gets its (empty) message."""
    with launched(workspace, "onnx", tmp_path, family="rtmpose", model=str(models["pose"]),
                  detector_model=str(asset(DETECTOR))) as (process, probe, log):
        real = replay_and_collect(probe, "onnx", frames[:1], family="rtmpose")
        ok, reason = set_parameter(probe, "/rtmpose_onnx", "detector_model", str(tmp_path / "missing.onnx"))
        assert not ok and "does not exist" in reason
        assert set_parameter(probe, "/rtmpose_onnx", "detector_model", str(models["fixed_detector"])) == (True, "")
        # The node logs "ready: ... weights <pose>, <detector>" once the rebuilt sessions serve.
        assert probe.spin_until(lambda: f"{models['pose']}, {models['fixed_detector']}" in log.read_text(), 60)
        fixed = replay_and_collect(probe, "onnx", frames[:1], family="rtmpose")
        assert set_parameter(probe, "/rtmpose_onnx", "max_poses", 2) == (True, "")
        limited = replay_and_collect(probe, "onnx", frames[:1], family="rtmpose")
        assert set_parameter(probe, "/rtmpose_onnx", "detector_confidence_threshold", 0.99) == (True, "")
        empty = replay_and_collect(probe, "onnx", frames[:1], family="rtmpose")
        probe.spin(1.5)  # the next 1 Hz diagnostics
        status = diagnostics_of(probe, "rtmpose_onnx")[-1]
    assert status["weights"] == str(models["pose"]) and status["detector_model weights"] == str(models["fixed_detector"])
    assert len(real[0].poses) >= 3
    # The fixed detector's boxes are in letterboxed pixels of a 960x540 frame: only their count matters here.
    assert len(fixed[0].poses) == len(BOXES) and len(limited[0].poses) == 2 and len(empty[0].poses) == 0
