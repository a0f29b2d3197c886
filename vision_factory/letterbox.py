"""The letterbox (resize keeping aspect ratio, then pad) and its inverse, as ultralytics computes them.

This is the only letterbox in the tree: every model that needs one calls `letterbox`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How a source image of `source_hw` was placed into the model input.

    resized_wh: size of the resized image inside the canvas, (width, height).
    pad_xy: left and top padding in pixels.
    ratio: the resize factor before rounding (mmdet / rtmlib map boxes back by dividing by it).
    """

    source_hw: tuple[int, int]
    resized_wh: tuple[int, int]
    pad_xy: tuple[int, int]
    ratio: float

    def boxes_to_source(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map boxes (N, 4) x1, y1, x2, y2 from model-input pixels to source pixels, clipped to the image."""
        height, width = self.source_hw
        scale = np.array([self.resized_wh[0] / width, self.resized_wh[1] / height] * 2, dtype=np.float32)
        pad = np.array(self.pad_xy * 2, dtype=np.float32)
        boxes = (boxes_xyxy - pad) / scale
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return boxes


def letterbox(image: np.ndarray, size_hw: tuple[int, int], pad_value: int = 114,
              center: bool = True, truncate: bool = False) -> tuple[np.ndarray, Letterbox]:
    """Resize `image` (H, W, C) to fit `size_hw` keeping its aspect ratio, and pad the rest with `pad_value`.

    center=True splits the padding between both sides (ultralytics); False puts the image top-left
    (YOLOX, mmdet). The resized size is rounded (ultralytics), or truncated with `truncate` (rtmlib's
    YOLOX). Returns the (size_h, size_w, C) canvas and the placement.
    """
    height, width = image.shape[:2]
    target_h, target_w = size_hw
    ratio = min(target_h / height, target_w / width)
    to_int = int if truncate else round
    new_w, new_h = max(to_int(width * ratio), 1), max(to_int(height * ratio), 1)
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_w, pad_h = target_w - new_w, target_h - new_h
    if center:
        # ultralytics' rounding: an odd padding puts the extra pixel at the bottom / right.
        top, left = round(pad_h / 2 - 0.1), round(pad_w / 2 - 0.1)
    else:
        top, left = 0, 0
    bottom, right = pad_h - top, pad_w - left
    canvas = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(pad_value,) * 3)
    return canvas, Letterbox((height, width), (new_w, new_h), (left, top), ratio)
