"""The result type of promptable segmentation models, and the prompts they take besides a topic's boxes."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vision_factory.detections import Detections

BOX_CLASS, POINT_CLASS = "box", "point"  # class_id of the echo of a `boxes` / `points` parameter's prompt
_NUMBER = r"\s*-?\d+(?:\.\d*)?\s*"


@dataclass(frozen=True)
class Segmentation:
    """One mask per prompt, in source pixels.

    label_image (H, W) uint16: 0 background, else 1 + the index of the prompt whose mask holds the pixel
    (where masks overlap, the one of the higher predicted IoU). prompts: the prompts in that order, each
    with its box (a point prompt's: its mask's extent), the mask's predicted IoU as score, and the
    prompt's class and id (Detections.track_ids)."""

    label_image: np.ndarray
    prompts: Detections

    def __len__(self) -> int:
        return len(self.prompts)


def label_image(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(N, H, W) bool masks -> (H, W) uint16: 1 + the index of the highest-scoring mask holding each pixel."""
    labels = np.zeros(masks.shape[1:], np.uint16)
    for index in np.argsort(scores, kind="stable"):  # the best painted last
        labels[masks[index]] = index + 1
    return labels


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) x1, y1, x2, y2 float32 of each mask's pixels (edges, so a one-pixel mask is 1
    wide); an empty mask's box is all zeros."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for index, mask in enumerate(masks):
        rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if len(rows):
            boxes[index] = columns[0], rows[0], columns[-1] + 1, rows[-1] + 1
    return boxes


def parse_coordinates(text: str, per_item: int, what: str) -> np.ndarray:
    """A parameter's "a,b,...; a,b,..." -> (N, per_item) float32 ('' -> none); ValueError naming `what`
    (e.g. "a box is x1,y1,x2,y2") otherwise."""
    items = [item for item in text.split(";") if item.strip()]
    pattern = re.compile(",".join([_NUMBER] * per_item) + "$")
    for item in items:
        if not pattern.match(item):
            raise ValueError(f"'{item.strip()}' is not a prompt: {what}, in pixels of the input image, prompts "
                             f"separated by ';'")
    return np.array([[float(v) for v in item.split(",")] for item in items], np.float32).reshape(-1, per_item)


def parse_boxes(text: str) -> np.ndarray:
    """The `boxes` parameter: "x1,y1,x2,y2; ..." -> (N, 4) float32, each with x1 < x2 and y1 < y2."""
    boxes = parse_coordinates(text, 4, "a box is x1,y1,x2,y2")
    if (boxes[:, 2:] <= boxes[:, :2]).any():
        raise ValueError("a box is x1,y1,x2,y2 with x1 < x2 and y1 < y2")
    return boxes


def parse_points(text: str) -> np.ndarray:
    """The `points` parameter: "x,y; ..." -> (N, 2) float32, each point prompting a mask of its own."""
    return parse_coordinates(text, 2, "a point is x,y")
