"""Every backend against ultralytics predict (same weights file, same 640 letterbox) and against each other,
on images/bus.jpg and images/zidane.jpg. Tolerances and their reasons are in reference.py; one looser
case is stated below."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import pytest

from conftest import CHECKPOINT, FP32_ONNX, IMAGES, INT8_ONNX, asset
from reference import from_detections, mismatches, ultralytics_predict
from vision_factory.loaded_model import load_default_model

pytest.importorskip("ultralytics", reason="the reference is ultralytics predict")
CONF = 0.25
DEVICES = {"onnx": "0", "openvino": "CPU", "cuda": "cuda:0"}  # cuda falls back to CPU without a GPU
# OpenVINO runs the dynamically quantised int8 graph with its own int8 kernels (activation scales
# differ from ONNX Runtime's): measured score differences up to 0.032 on these images and the bag.
# For that pair only, confident detections (>= 0.5) are checked with a 0.05 score tolerance.
INT8_OPENVINO_SCORE_TOL, INT8_OPENVINO_MIN_SCORE = 0.05, 0.5
CASES = [(INT8_ONNX, "onnx"), (INT8_ONNX, "openvino"), (FP32_ONNX, "onnx"), (FP32_ONNX, "openvino"),
         (CHECKPOINT, "onnx"), (CHECKPOINT, "openvino"), (CHECKPOINT, "cuda")]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


_RUNNERS: dict = {}


def runner(weights: Path, backend: str, cache_dir: Path):
    key = (weights, backend)
    if key not in _RUNNERS:
        _RUNNERS[key] = load_default_model("yolo", backend, asset(weights), cache_dir, logging.getLogger("parity"),
                                           imgsz=640, device=DEVICES[backend], precision="fp32")
    return _RUNNERS[key]


def detect(weights: Path, backend: str, image_name: str, cache_dir: Path):
    image = cv2.imread(str(asset(IMAGES / image_name)))
    return from_detections(runner(weights, backend, cache_dir).model(image, CONF, 0.7, "", 300)), image


@pytest.mark.parametrize("image_name", ["bus.jpg", "zidane.jpg"])
@pytest.mark.parametrize("weights, backend", CASES, ids=[f"{w.name}-{b}" for w, b in CASES])
def test_backend_matches_ultralytics_predict(weights: Path, backend: str, image_name: str, cache_dir: Path) -> None:
    ours, image = detect(weights, backend, image_name, cache_dir)
    reference = ultralytics_predict(weights, image, CONF)
    assert len(reference) >= 3  # the images hold several objects: the comparison is not vacuous
    if (weights, backend) == (INT8_ONNX, "openvino"):
        confident = [b for b in reference if b.score >= INT8_OPENVINO_MIN_SCORE]
        assert mismatches(ours, confident, INT8_OPENVINO_MIN_SCORE, score_tol=INT8_OPENVINO_SCORE_TOL) == []
    else:
        assert mismatches(ours, reference, CONF) == []


@pytest.mark.parametrize("image_name", ["bus.jpg", "zidane.jpg"])
def test_onnx_openvino_and_cuda_agree_with_each_other(image_name: str, cache_dir: Path) -> None:
    results = {backend: detect(CHECKPOINT, backend, image_name, cache_dir)[0] for backend in DEVICES}
    for backend in ("openvino", "cuda"):
        assert mismatches(results[backend], results["onnx"], CONF) == [], backend


def test_bus_detections_are_the_documented_ones(cache_dir: Path) -> None:
    ours, _ = detect(INT8_ONNX, "onnx", "bus.jpg", cache_dir)
    # ../shared/assets/MANIFEST.md lists person .903 .895 .891, bus .810, person .391, measured with an
    # unstated preprocessing. ultralytics 8.4 predict and this node both give .899 .896 .890 .822 .312:
    # the confident four agree within 0.015; the weak fifth box differs by 0.08 and is not compared.
    assert [b.name for b in ours] == ["person", "person", "person", "bus", "person"]
    assert max(abs(b.score - s) for b, s in zip(ours, [0.903, 0.895, 0.891, 0.810])) <= 0.015
