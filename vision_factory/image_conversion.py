"""sensor_msgs/Image and CompressedImage <-> numpy arrays, without cv_bridge.

Every decoder returns a C-contiguous BGR uint8 array of shape (H, W, 3): the layout the models'
preprocessing expects. An unpadded bgr8 image is returned as a read-only view of the message buffer
(no copy on the hot path); every other input is converted into a new array. Messages are duck-typed
(any object with the fields), so this module never imports rclpy and is tested with plain namespaces.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# encoding -> (channels, cv2 conversion to BGR or None when already BGR)
ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
}


class ImageDecodeError(ValueError):
    """The message cannot be turned into an image; the text says why, `kind` names the check that
    failed (the node logs each kind on a throttle of its own)."""

    def __init__(self, text: str, kind: str):
        super().__init__(text)
        self.kind = kind


def image_to_bgr(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/Image (bgr8, rgb8, mono8, bgra8, rgba8; any row padding) to BGR (H, W, 3)."""
    encoding = msg.encoding.lower()
    if encoding not in ENCODINGS:
        raise ImageDecodeError(
            f"unsupported encoding '{msg.encoding}' (supported: {', '.join(ENCODINGS)})", "encoding")
    channels, conversion = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"empty image: {width}x{height}", "size")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is smaller than width x channels = {row_bytes}", "step")
    data = msg.data
    if len(data) != step * height:
        raise ImageDecodeError(
            f"data holds {len(data)} bytes, expected step x height = {step} x {height} = {step * height}", "data")
    # A view over the message buffer; the conversion below makes the one copy we need.
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = rows.reshape(height, width, channels)
    if conversion is None:
        pixels = np.ascontiguousarray(pixels)  # copies only when rows are padded
        pixels.flags.writeable = False
        return pixels
    return cv2.cvtColor(pixels, conversion)


def compressed_to_bgr(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, ...) to BGR (H, W, 3)."""
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise ImageDecodeError(f"cannot decode CompressedImage (format '{msg.format}', {buffer.size} bytes)",
                               "compressed")
    return image
