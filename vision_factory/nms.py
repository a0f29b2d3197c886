"""Non-maximum suppression through OpenCV (no torch needed)."""
from __future__ import annotations

import cv2
import numpy as np


def class_aware_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    iou_threshold: float, max_detections: int = 300) -> np.ndarray:
    """Indices of the boxes kept by per-class NMS, best score first.

    boxes_xyxy (N, 4) float, scores (N,), class_ids (N,) int. Boxes of different classes never
    suppress each other (as ultralytics' default, non-agnostic NMS).
    """
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.concatenate([boxes_xyxy[:, :2], boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(xywh.astype(np.float64).tolist(), scores.astype(np.float64).tolist(),
                                   class_ids.astype(np.int64).tolist(), 0.0, float(iou_threshold))
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return keep[:max_detections]
