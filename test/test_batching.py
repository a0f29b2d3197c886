"""Frames of several cameras through one session run (the yolo manifest's max_batch_size): a .pt checkpoint
exported with a dynamic batch axis answers a batch exactly as it answers the same frames one by one, on every
backend that can batch here; a fixed-batch ONNX file and the tensorrt backend say why they cannot."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import CHECKPOINT, IMAGES, INT8_ONNX, asset
from vision_factory.backends import tensorrt_session
from vision_factory.loaded_model import load_default_model

LOG = logging.getLogger("test_batching")
pytest.importorskip("ultralytics", reason="the dynamic export of a .pt checkpoint is ultralytics'")


@pytest.mark.parametrize("backend, overrides", [("onnx", {}), ("openvino", {"precision": "fp32"}), ("cuda", {})])
def test_a_batch_answers_as_its_frames_one_by_one(backend: str, overrides: dict, tmp_path: Path) -> None:
    images = [cv2.imread(str(asset(IMAGES / name))) for name in ("bus.jpg", "zidane.jpg", "bus.jpg")]
    images[2] = cv2.resize(images[2], (640, 480))  # sizes differ: each frame keeps its own letterbox
    loaded = load_default_model("yolo", backend, asset(CHECKPOINT), tmp_path, LOG, max_batch_size=4, **overrides)
    assert loaded.model.batch_size == 4
    batched = loaded.model.batch(images)
    single = [loaded.model(image) for image in images]
    assert len(batched) == 3 and all(len(one.scores) >= 2 for one in single)  # people on every image
    for together, alone in zip(batched, single):
        np.testing.assert_array_equal(together.class_ids, alone.class_ids)
        np.testing.assert_allclose(together.boxes_xyxy, alone.boxes_xyxy, atol=0.05)  # pixels
        np.testing.assert_allclose(together.scores, alone.scores, atol=1e-4)


def test_a_fixed_batch_model_runs_frames_one_by_one_and_says_so(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        loaded = load_default_model("yolo", "onnx", asset(INT8_ONNX), tmp_path, LOG, max_batch_size=4)
    assert loaded.model.batch_size == 1
    assert "the model's batch size is fixed at 1: frames run one by one" in caplog.text


def test_tensorrt_refuses_a_batch_it_cannot_build() -> None:
    assert "max_batch_size must be 1" in tensorrt_session.option_problem("max_batch_size", 4)
    assert tensorrt_session.option_problem("max_batch_size", 1) == ""
