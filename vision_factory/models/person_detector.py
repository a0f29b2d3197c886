"""Person detectors for top-down pose models: OpenMMLab's end-to-end YOLOX (the detector rtmlib pairs with
RTMPose) or the project's YOLO model. The weights tell which: ultralytics exports carry their class names
in the ONNX metadata, OpenMMLab's do not.

This is the weights module of a pose manifest's `detector_model` (see vision_factory.models).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vision_factory.backends.session import Session
from vision_factory.errors import ConfigError
from vision_factory.input_tensor import planar_blob
from vision_factory.letterbox import letterbox
from vision_factory.models import yolo, yolo_weights
from vision_factory.models.rtmlib_support import ZOO_WEIGHTS

# A YOLO .pt checkpoint is exported to ONNX with ultralytics, at this input size.
CHECKPOINTS, is_checkpoint = yolo_weights.CHECKPOINTS, yolo_weights.is_checkpoint
exporter_fields = yolo_weights.exporter_fields
YOLO_IMGSZ = 640


def weights_problem(model: str) -> str:
    """'' if `model` can name detector weights: a YOLO checkpoint (file or ultralytics name), an ONNX file or
    an http(s) URL; else why not."""
    if is_checkpoint(Path(model)):
        return yolo_weights.weights_problem(model)
    return ZOO_WEIGHTS.weights_problem(model)


def resolve_weights(model: str, download_dir: Path) -> Path:
    if is_checkpoint(Path(model)):
        return yolo_weights.resolve_weights(model, download_dir)
    return ZOO_WEIGHTS.resolve_weights(model, download_dir)


def export_onnx(weights: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
    return yolo_weights.export_onnx(weights, dst, {"imgsz": YOLO_IMGSZ}, logger)


class YoloxPersons:
    """An OpenMMLab end-to-end YOLOX detector (outputs `dets` (1, N, 5): x1, y1, x2, y2, score in
    letterboxed pixels, NMS inside; and `labels`), fed as rtmlib's YOLOX feeds it: BGR 0-255, letterboxed
    top-left with padding 114, the resized size truncated."""

    def __init__(self, session: Session):
        self.session = session
        self.input_hw = tuple(session.input_shape[2:4])

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """The (1, 3, H, W) input tensor, and the resize ratio that maps its boxes back (divide by it)."""
        padded, placement = letterbox(image_bgr, self.input_hw, center=False, truncate=True)
        return planar_blob(padded), placement.ratio

    def __call__(self, image_bgr: np.ndarray, score_threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) x1, y1, x2, y2 in source pixels, clipped to the image, and their scores, best first."""
        blob, ratio = self.preprocess(image_bgr)
        dets = self.session.run({self.session.input_name: blob})[0]
        if dets.ndim != 3 or dets.shape[-1] != 5:
            raise ValueError(f"expected end-to-end detections (1, N, 5), got {dets.shape}: this detector "
                             f"needs NMS in the graph")
        # Decoded here: rtmlib's YOLOX.postprocess drops the scores and fixes the threshold at 0.3.
        boxes, scores = dets[0, :, :4] / ratio, dets[0, :, 4]
        keep = scores > score_threshold
        boxes, scores = boxes[keep], scores[keep]
        height, width = image_bgr.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        order = np.argsort(-scores)
        return boxes[order].astype(np.float32), scores[order].astype(np.float32)


class YoloPersons:
    """The project's YOLO detector keeping its 'person' class only."""

    def __init__(self, session: Session, metadata: Mapping[str, str], logger: Any):
        self._yolo = yolo.YoloDetector(session, metadata, {"imgsz": YOLO_IMGSZ}, logger)
        if "person" not in self._yolo.labels:
            raise ConfigError("the YOLO detector has no 'person' class")
        self._person = str(self._yolo.labels.index("person"))

    def __call__(self, image_bgr: np.ndarray, score_threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (N, 4) x1, y1, x2, y2 in source pixels and their scores, best first."""
        found = self._yolo(image_bgr, confidence_threshold=score_threshold, classes=self._person)
        return found.boxes_xyxy, found.scores


def person_detector(session: Session, metadata: Mapping[str, str],
                    logger: Any = logging.getLogger(__name__)) -> YoloxPersons | YoloPersons:
    """The detector the weights are: YOLO when they carry ultralytics class names, else end-to-end YOLOX."""
    if yolo.parse_labels(metadata):
        return YoloPersons(session, metadata, logger)
    return YoloxPersons(session)
