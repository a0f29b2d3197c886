"""Annotated debug images."""
from __future__ import annotations

import cv2
import numpy as np

from vision_factory.depth import DepthMap
from vision_factory.detections import Detections
from vision_factory.generated_text import GeneratedText
from vision_factory.masks import Segmentation
from vision_factory.poses import Poses


def draw_detections(image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of `image_bgr` with each box, class name, score and track id drawn; colour fixed per class."""
    canvas = image_bgr.copy()
    track_ids = detections.track_ids or ("",) * len(detections)
    for box, score, class_id, track_id in zip(detections.boxes_xyxy.round().astype(int), detections.scores,
                                              detections.class_ids, track_ids):
        hue = int(class_id) * 47 % 180
        colour = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
        x1, y1, x2, y2 = box.tolist()
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        text = f"{'#' + track_id + ' ' if track_id else ''}{detections.class_name(int(class_id))} {score:.2f}"
        cv2.putText(canvas, text, (x1, max(y1 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
    return canvas


def draw_poses(image_bgr: np.ndarray, poses: Poses) -> np.ndarray:
    """A copy of `image_bgr` with each box and score, the limbs between shown keypoints, and the keypoints."""
    canvas = image_bgr.copy()
    for box, score, keypoints in zip(poses.boxes_xyxy.round().astype(int), poses.scores, poses.keypoints):
        x1, y1, x2, y2 = box.tolist()
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), 1)
        cv2.putText(canvas, f"{score:.2f}", (x1, max(y1 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 0), 1)
        shown = ~np.isnan(keypoints).any(axis=1)  # NaN: below the keypoint threshold
        points = np.where(shown[:, None], keypoints, 0).round().astype(int)
        for a, b in poses.skeleton.edges:
            if shown[a] and shown[b]:
                cv2.line(canvas, tuple(points[a].tolist()), tuple(points[b].tolist()), (255, 160, 0), 2)
        for point in points[shown]:
            cv2.circle(canvas, tuple(point.tolist()), 3, (0, 0, 255), -1)
    return canvas


def draw_masks(image_bgr: np.ndarray, segmentation: Segmentation) -> np.ndarray:
    """`image_bgr` with each prompt's mask blended in a colour of its own, and its box, class, id and score."""
    hues = (np.arange(len(segmentation)) * 47 % 180).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 220), np.full_like(hues, 255)], -1)[None]
    palette = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0].astype(np.float32)
    labels = segmentation.label_image
    canvas = image_bgr.copy()
    labelled = labels > 0
    canvas[labelled] = (image_bgr[labelled] * 0.5 + palette[labels[labelled] - 1] * 0.5).astype(np.uint8)
    return draw_detections(canvas, segmentation.prompts)


def draw_generated_text(image_bgr: np.ndarray, answer: GeneratedText) -> np.ndarray:
    """`image_bgr` with the answer's regions (and polygons) and its text along the top, wrapped."""
    canvas = draw_detections(image_bgr, answer.regions)
    for polygon in answer.polygons:
        cv2.polylines(canvas, [polygon.astype(np.int32).reshape(-1, 1, 2)], True, (0, 255, 255), 2)
    width = max(1, canvas.shape[1] // 11)  # characters a line at this font size
    lines = [answer.text[i:i + width] for i in range(0, min(len(answer.text), width * 6), width)]
    for row, line in enumerate(lines):
        origin = (4, 20 + 20 * row)
        cv2.putText(canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def colour_depth(depth: DepthMap, top: float) -> np.ndarray:
    """BGR image of the depth values on OpenCV's turbo scale, 0 at the bottom and `top` at the top (fixed,
    never per-frame normalisation, so colours mean the same in every frame)."""
    scaled = np.clip(depth.values * (255.0 / top), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)
