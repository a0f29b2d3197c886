"""RTMPose top-down pieces on our sessions: a known-answer pose model whose SimCC peaks must land where
the person box's affine transform puts them, the real YOLOX person detector against COCO ground truth,
and onnx / openvino parity."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ASSETS, asset

pytest.importorskip("rtmlib", reason="the rtmpose model uses rtmlib's processing")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from vision_factory.backends.onnxruntime_session import OnnxRuntimeSession  # noqa: E402
from vision_factory.backends.openvino_session import OpenVinoSession, convert_onnx  # noqa: E402
from vision_factory.models.rtmpose import PersonDetector, PoseEstimator  # noqa: E402

INPUT_WH = (192, 256)  # RTMPose-m body: input (1, 3, 256, 192)
SPLIT = 2.0  # SimCC bins per input pixel
KEYPOINTS = 17
DETECTOR = ASSETS / "models" / "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx"
COCO = ASSETS / "images" / "coco_mmpose"


def peak_bins() -> np.ndarray:
    """(K, 2) SimCC bins (x, y) spread over the crop, away from its edges and not on a grid."""
    rng = np.random.default_rng(7)
    return np.stack([rng.integers(20, INPUT_WH[0] * SPLIT - 20, KEYPOINTS),
                     rng.integers(20, INPUT_WH[1] * SPLIT - 20, KEYPOINTS)], axis=1)


def known_answer_model(path: Path, bins: np.ndarray) -> Path:
    """An ONNX model with RTMPose's exact signature whose SimCC outputs peak at `bins`, whatever the
    input (which still feeds the graph, as a real model's does)."""
    simcc_x = np.zeros((1, KEYPOINTS, int(INPUT_WH[0] * SPLIT)), np.float32)
    simcc_y = np.zeros((1, KEYPOINTS, int(INPUT_WH[1] * SPLIT)), np.float32)
    simcc_x[0, np.arange(KEYPOINTS), bins[:, 0]] = 0.9
    simcc_y[0, np.arange(KEYPOINTS), bins[:, 1]] = 0.7
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Add", ["peaks_x", "nothing"], ["simcc_x"]),
             helper.make_node("Add", ["peaks_y", "nothing"], ["simcc_y"])]
    graph = helper.make_graph(
        nodes, "known_answer_rtmpose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, INPUT_WH[1], INPUT_WH[0]])],
        [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, list(simcc_x.shape)),
         helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, list(simcc_y.shape))],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
         onnx.numpy_helper.from_array(simcc_x, "peaks_x"), onnx.numpy_helper.from_array(simcc_y, "peaks_y")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def expected_keypoints(box: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Where the peaks sit in the image: the crop is the box grown by 1.25 and widened or heightened to
    the model's 3:4 aspect, centred on the box; a bin maps linearly across it."""
    centre = (box[:2] + box[2:]) / 2
    width, height = (box[2:] - box[:2]) * 1.25
    aspect = INPUT_WH[0] / INPUT_WH[1]
    width, height = (width, width / aspect) if width > height * aspect else (height * aspect, height)
    crop = np.array([width, height])
    return centre - crop / 2 + bins / SPLIT / np.array(INPUT_WH) * crop


@pytest.fixture(scope="module")
def known_answer(tmp_path_factory) -> tuple[Path, np.ndarray]:
    bins = peak_bins()
    return known_answer_model(tmp_path_factory.mktemp("pose") / "rtmpose.onnx", bins), bins


IMAGE_HW = (480, 640)
BOXES = [
    [200, 100, 300, 400],    # tall person
    [50, 200, 450, 300],     # lying down: wider than tall
    [0, 0, 80, 120],         # at the top-left corner
    [560, 380, 640, 480],    # at the bottom-right corner
    [-30, 300, 60, 520],     # partly outside the image
    [310.5, 20.25, 333.75, 61.5],  # small, fractional
]


def test_known_answer_keypoints_land_within_one_pixel(known_answer) -> None:
    path, bins = known_answer
    estimator = PoseEstimator(OnnxRuntimeSession(path, {"execution_provider": "cpu"}))
    image = np.random.default_rng(1).integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
    keypoints, scores = estimator(image, np.array(BOXES, np.float32))
    assert keypoints.shape == (len(BOXES), KEYPOINTS, 2) and scores.shape == (len(BOXES), KEYPOINTS)
    for box, found in zip(np.array(BOXES, np.float64), keypoints):
        error = np.abs(found - expected_keypoints(box, bins)).max()
        assert error <= 1.0, (box, error)
    assert np.allclose(scores, 0.8)  # rtmlib: the mean of the x and y peak values


def test_no_person_no_pose(known_answer) -> None:
    estimator = PoseEstimator(OnnxRuntimeSession(known_answer[0], {"execution_provider": "cpu"}))
    keypoints, scores = estimator(np.zeros((*IMAGE_HW, 3), np.uint8), np.zeros((0, 4), np.float32))
    assert keypoints.shape[0] == 0 and scores.shape[0] == 0


def test_onnx_and_openvino_give_the_same_keypoints(known_answer, tmp_path) -> None:
    path, _ = known_answer
    xml = tmp_path / "rtmpose.xml"
    convert_onnx(path, xml, {}, None)
    image = cv2.imread(str(asset(COCO / "000000000785.jpg")))
    boxes = np.array([[280.8, 44.7, 499.5, 391.4]], np.float32)
    onnx_keypoints, onnx_scores = PoseEstimator(OnnxRuntimeSession(path, {"execution_provider": "cpu"}))(image, boxes)
    ov_keypoints, ov_scores = PoseEstimator(OpenVinoSession(xml, {"device": "CPU"}))(image, boxes)
    assert np.abs(onnx_keypoints - ov_keypoints).max() <= 1.0 and np.allclose(onnx_scores, ov_scores, atol=1e-4)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(x2 - x1, 0) * max(y2 - y1, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_real_person_detector_finds_the_annotated_people(backend, tmp_path) -> None:
    """Every COCO person with >= 10 annotated keypoints is found with IoU >= 0.7."""
    truth = json.loads(asset(COCO / "test_coco.json").read_text())
    if backend == "onnx":
        session = OnnxRuntimeSession(asset(DETECTOR), {"execution_provider": "cpu"})
    else:
        convert_onnx(asset(DETECTOR), tmp_path / "yolox.xml", {}, None)
        session = OpenVinoSession(tmp_path / "yolox.xml", {"device": "CPU"})
    detector = PersonDetector(session)
    checked = 0
    for image_info in truth["images"]:
        boxes, scores = detector(cv2.imread(str(COCO / image_info["file_name"])), score_threshold=0.3)
        for person in truth["annotations"]:
            if person["image_id"] != image_info["id"] or person["num_keypoints"] < 10:
                continue
            x, y, w, h = person["bbox"]
            best = max((iou(np.array([x, y, x + w, y + h]), box) for box in boxes), default=0.0)
            assert best >= 0.7, (image_info["file_name"], person["bbox"], best)
            checked += 1
    assert checked == 12
