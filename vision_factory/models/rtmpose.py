"""Top-down human pose: the YOLOX person detector rtmlib pairs with RTMPose finds people, RTMPose
estimates keypoints in each box.

The model-specific processing is rtmlib's (its YOLOX letterbox, its RTMPose affine crop, normalisation
and SimCC decoding); only the runtime is ours: each class runs rtmlib's steps around one of our backend
sessions instead of the runtime rtmlib would open itself.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from rtmlib import YOLOX, RTMPose

from vision_factory.backends.session import Session

# RTMPose's input normalisation (ImageNet mean / std on 0-255 BGR->RGB pixels), as rtmlib's defaults.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


class _OnOurSession:
    """rtmlib's inference hook on one of our sessions. rtmlib's BaseTool.__init__, which would open a
    runtime from a file path, is deliberately not called: the session is already open."""

    session: Session

    def inference(self, image: np.ndarray) -> list[np.ndarray]:
        """One preprocessed HWC image -> the model's outputs (rtmlib's contract)."""
        blob = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        return self.session.run({self.session.input_name: blob})


class PoseEstimator(_OnOurSession, RTMPose):
    """RTMPose (body 17, wholebody 133, hand 21 keypoints: the count comes from the model) on a session
    whose input is (1, 3, height, width) and whose outputs are SimCC x and y."""

    def __init__(self, session: Session):
        height, width = session.input_shape[2:4]
        self.session = session
        self.model_input_size = (width, height)  # rtmlib's order
        self.mean, self.std = np.array(MEAN), np.array(STD)
        self.to_openpose = False

    def __call__(self, image_bgr: np.ndarray, boxes_xyxy: Any) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in source pixels and their scores (N, K) for N person boxes.

        No boxes, no poses: rtmlib would otherwise treat the whole image as one person."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 0, 2), np.float32), np.zeros((0, 0), np.float32)
        keypoints, scores = RTMPose.__call__(self, image_bgr, list(boxes))
        return keypoints.astype(np.float32), scores.astype(np.float32)


class PersonDetector(_OnOurSession, YOLOX):
    """An OpenMMLab end-to-end YOLOX person detector (outputs `dets` (1, N, 5): x1, y1, x2, y2, score in
    letterboxed pixels, NMS inside; and `labels`), letterboxed top-left with padding 114 by rtmlib."""

    def __init__(self, session: Session):
        height, width = session.input_shape[2:4]
        self.session = session
        self.model_input_size = (height, width)  # rtmlib's YOLOX order

    def __call__(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (N, 4) x1, y1, x2, y2 in source pixels, clipped to the image, and their scores."""
        padded, ratio = self.preprocess(image_bgr)
        dets = self.inference(padded)[0]
        if dets.ndim != 3 or dets.shape[-1] != 5:
            raise ValueError(f"expected end-to-end detections (1, N, 5), got {dets.shape}: this detector "
                             f"needs NMS in the graph")
        # Decoded here rather than by rtmlib's YOLOX.postprocess, which drops the scores and fixes the
        # threshold at 0.3.
        boxes, scores = dets[0, :, :4] / ratio, dets[0, :, 4]
        keep = scores > score_threshold
        boxes, scores = boxes[keep], scores[keep]
        height, width = image_bgr.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        order = np.argsort(-scores)
        return boxes[order].astype(np.float32), scores[order].astype(np.float32)
