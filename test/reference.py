"""The ultralytics reference and the matching rule the correctness tests share.

Rule: detections of the same class are paired greedily by IoU, best reference score first. A pair
must have IoU >= IOU_MIN and |score difference| <= SCORE_TOL. A detection without a partner is
allowed only if its score is within SCORE_TOL of the confidence threshold, where a tiny numeric
difference may legitimately put it on the other side.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

IOU_MIN = 0.9
SCORE_TOL = 0.02


class Box(NamedTuple):
    name: str
    score: float
    xyxy: tuple[float, float, float, float]


def from_detections(detections) -> list[Box]:
    return [Box(detections.class_name(int(c)), float(s), tuple(map(float, b)))
            for b, s, c in zip(detections.boxes_xyxy, detections.scores, detections.class_ids)]


def from_message(msg) -> list[Box]:
    boxes = []
    for det in msg.detections:
        cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
        w, h = det.bbox.size_x, det.bbox.size_y
        hypothesis = det.results[0].hypothesis
        boxes.append(Box(hypothesis.class_id, hypothesis.score, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    return boxes


_MODELS: dict = {}


def ultralytics_predict(weights: Path, image_bgr: np.ndarray, conf: float, iou: float = 0.7,
                        imgsz: int = 640) -> list[Box]:
    """ultralytics' own predict on the same square letterboxed size (rect=False)."""
    from ultralytics import YOLO

    if str(weights) not in _MODELS:  # setdefault would load the weights on every call
        _MODELS[str(weights)] = YOLO(str(weights), task="detect")
    model = _MODELS[str(weights)]
    result = model.predict(image_bgr, imgsz=imgsz, conf=conf, iou=iou, rect=False, verbose=False)[0]
    return [Box(result.names[int(c)], float(s), tuple(map(float, b)))
            for b, s, c in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist())]


def annotated_people(truth: dict, image_id: int, min_keypoints: int = 10) -> list[np.ndarray]:
    """x1, y1, x2, y2 of the people of a COCO keypoints file (test_coco.json) annotated with at least
    `min_keypoints` keypoints in image `image_id`: the pose detector's reference."""
    return [np.array([x, y, x + w, y + h]) for x, y, w, h in
            (p["bbox"] for p in truth["annotations"]
             if p["image_id"] == image_id and p["num_keypoints"] >= min_keypoints)]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mismatches(ours: list[Box], reference: list[Box], conf: float, iou_min: float = IOU_MIN,
               score_tol: float = SCORE_TOL) -> list[str]:
    """What violates the rule above; [] when the two agree."""
    problems, free = [], list(range(len(ours)))
    for ref in sorted(reference, key=lambda b: -b.score):
        candidates = [(iou(ours[i].xyxy, ref.xyxy), i) for i in free if ours[i].name == ref.name]
        best_iou, best = max(candidates, default=(0.0, None))
        if best is not None and best_iou >= iou_min and abs(ours[best].score - ref.score) <= score_tol:
            free.remove(best)
        elif ref.score > conf + score_tol:
            problems.append(f"reference {ref.name} {ref.score:.3f} {np.round(ref.xyxy, 1).tolist()} unmatched "
                            f"(best IoU {best_iou:.3f}" + (f", score {ours[best].score:.3f})" if best is not None else ")"))
    problems += [f"extra {ours[i].name} {ours[i].score:.3f}" for i in free if ours[i].score > conf + score_tol]
    return problems


def worst_differences(ours: list[Box], reference: list[Box]) -> tuple[float, float]:
    """(lowest IoU, largest score difference) over same-class best pairs: for reporting tolerances."""
    worst_iou, worst_score = 1.0, 0.0
    for ref in reference:
        pairs = [(iou(o.xyxy, ref.xyxy), o) for o in ours if o.name == ref.name]
        if pairs:
            best_iou, best = max(pairs, key=lambda p: p[0])
            if best_iou > 0.5:
                worst_iou, worst_score = min(worst_iou, best_iou), max(worst_score, abs(best.score - ref.score))
    return worst_iou, worst_score
