"""Ultralytics YOLO detectors, per frame: letterbox preprocessing and decoding of the raw
(1, 4 + classes, anchors) head. Pure numpy around any backend session; the weights handling (checkpoints,
export, PyTorch loading) is in yolo_weights.
"""
from __future__ import annotations

import ast
import logging
from typing import Any, Mapping

import numpy as np

from vision_factory.backends.session import Session
from vision_factory.detections import Detections
from vision_factory.errors import ConfigError
from vision_factory.input_tensor import planar_blob
from vision_factory.letterbox import Letterbox, letterbox
from vision_factory.nms import class_aware_nms

PAD_VALUE = 114
MAX_NMS_CANDIDATES = 30000  # as ultralytics: only the best-scored candidates enter NMS


def parse_labels(metadata: Mapping[str, str]) -> tuple[str, ...]:
    """Class names from ultralytics metadata ("names": "{0: 'person', ...}"), or () if absent."""
    text = metadata.get("names")
    if not text:
        return ()
    names = ast.literal_eval(text)  # literal_eval: metadata is data, never code
    return tuple(str(names[i]) for i in sorted(names))


class YoloDetector:
    """Letterbox -> session -> decode, per-class NMS and mapping back to source pixels."""

    def __init__(self, session: Session, metadata: Mapping[str, str], options: Mapping[str, Any],
                 logger: Any = logging.getLogger(__name__)):
        self.session = session
        self.labels = parse_labels(metadata)
        if not self.labels:
            logger.warning("the model carries no class names: class ids are published as names")
        height, width = session.input_shape[2:4]
        imgsz = int(options.get("imgsz", 640))
        if height > 0 and width > 0:
            if (height, width) != (imgsz, imgsz):
                logger.info(f"the model's input is fixed at {width}x{height}; imgsz {imgsz} does not apply")
            self.input_hw = (height, width)
        else:
            self.input_hw = (imgsz, imgsz)
        self._classes: tuple[str, np.ndarray | None] | None = None  # (text, ids): one attribute, swapped whole
        wanted = int(options.get("max_batch_size", 1))
        # Frames batch only on a network whose batch axis is dynamic (an ultralytics export is fixed at 1).
        self.batch_size = wanted if session.input_shape[0] == -1 else 1
        if wanted > self.batch_size:
            logger.warning(f"the model's batch size is fixed at {session.input_shape[0]}: frames run one by one "
                           f"(max_batch_size {wanted} needs a .pt checkpoint, exported with a dynamic batch axis)")

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """BGR (H, W, 3) uint8 -> (1, 3, h, w) float32 RGB in [0, 1], letterboxed; and the placement."""
        canvas, placement = letterbox(image_bgr, self.input_hw, PAD_VALUE)
        return planar_blob(canvas, 1.0 / 255.0, reverse_channels=True), placement

    def postprocess(self, output: np.ndarray, placement: Letterbox, confidence_threshold: float,
                    iou_threshold: float, classes: np.ndarray | None, max_detections: int) -> Detections:
        """Decode the raw head output (1, 4 + C, N): cx, cy, w, h in input pixels, then C class scores."""
        if not np.isfinite(output).all():
            raise ValueError("the model output contains NaN or Inf (a broken export or a numeric overflow)")
        predictions = output[0]
        class_scores = predictions[4:]
        # The best class of an anchor only where its score passes: argmax over every anchor took 0.6 of a
        # 1.1 ms postprocess (YOLOv8n, 8400 anchors); max is 0.07 ms. First maximum wins ties, as argmax.
        scores = class_scores.max(axis=0)
        candidates = np.flatnonzero(scores > confidence_threshold)
        class_ids = np.zeros(len(scores), np.int64)
        class_ids[candidates] = class_scores[:, candidates].argmax(axis=0)
        if classes is not None:
            candidates = candidates[np.isin(class_ids[candidates], classes)]
        if len(candidates) > MAX_NMS_CANDIDATES:
            candidates = candidates[np.argsort(-scores[candidates])[:MAX_NMS_CANDIDATES]]
        if len(candidates) == 0:
            return Detections.empty(self.labels)
        centre, size = predictions[0:2, candidates].T, predictions[2:4, candidates].T
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        kept = class_aware_nms(boxes, scores[candidates], class_ids[candidates], iou_threshold, max_detections)
        return Detections(placement.boxes_to_source(boxes[kept]).astype(np.float32),
                          scores[candidates][kept].astype(np.float32),
                          class_ids[candidates][kept].astype(np.int64), self.labels)

    def __call__(self, image_bgr: np.ndarray, confidence_threshold: float = 0.25, iou_threshold: float = 0.7,
                 classes: str = "", max_detections: int = 300) -> Detections:
        blob, placement = self.preprocess(image_bgr)
        output = self.session.run({self.session.input_name: blob})[0]
        return self.postprocess(output, placement, confidence_threshold, iou_threshold,
                                self._class_filter(classes), max_detections)

    def batch(self, images_bgr: list[np.ndarray], confidence_threshold: float = 0.25, iou_threshold: float = 0.7,
              classes: str = "", max_detections: int = 300) -> list[Detections]:
        """Several frames (at most batch_size) through one session run; the same results as one by one."""
        prepared = [self.preprocess(image) for image in images_bgr]
        outputs = self.session.run({self.session.input_name: np.concatenate([blob for blob, _ in prepared])})[0]
        return [self.postprocess(outputs[i:i + 1], placement, confidence_threshold, iou_threshold,
                                 self._class_filter(classes), max_detections)
                for i, (_, placement) in enumerate(prepared)]

    def option_problem(self, name: str, value: Any) -> str:
        """'' if a frame option value can be used, else why not."""
        if name == "classes":
            try:
                self.parse_classes(value)
            except ConfigError as e:
                return str(e)
        return ""

    def parse_classes(self, text: str) -> np.ndarray | None:
        """"person, 2" -> array of class ids; "" -> None (keep all). Unknown names raise ConfigError."""
        ids = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if item.isdigit():
                if self.labels and int(item) >= len(self.labels):
                    raise ConfigError(f"class id {item} in classes is not one of the model's "
                                      f"{len(self.labels)} classes (0 to {len(self.labels) - 1})")
                ids.append(int(item))
            elif item in self.labels:
                ids.append(self.labels.index(item))
            else:
                raise ConfigError(f"unknown class '{item}' in classes (the model's classes: "
                                  f"{', '.join(self.labels) or 'ids only'})")
        return np.array(ids, dtype=np.int64) if ids else None

    def _class_filter(self, text: str) -> np.ndarray | None:
        classes = self._classes
        if classes is None or classes[0] != text:  # parse once per parameter value, not per frame
            classes = self._classes = (text, self.parse_classes(text))
        return classes[1]


def build_model(sessions: Mapping[str, Session], metadata: Mapping[str, Mapping[str, str]],
                options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)) -> YoloDetector:
    """The detector on the session of the `model` weights (the only weights YOLO has)."""
    return YoloDetector(sessions["model"], metadata["model"], options, logger)
