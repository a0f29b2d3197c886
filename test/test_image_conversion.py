"""sensor_msgs Image / CompressedImage -> BGR arrays, for every encoding and padded rows."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from vision_factory.image_conversion import (ENCODINGS, ImageDecodeError, compressed_to_bgr,
                                             image_to_bgr)

RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
# encoding -> the pixels a camera would send for BGR above
AS_SENT = {
    "bgr8": BGR,
    "rgb8": BGR[:, :, ::-1],
    "bgra8": np.dstack([BGR, np.full((5, 7), 200, np.uint8)]),
    "rgba8": np.dstack([BGR[:, :, ::-1], np.full((5, 7), 200, np.uint8)]),
}


def message(pixels: np.ndarray, encoding: str, padding: int = 0) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, padding), 77, np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, height=height, width=width, step=padded.shape[1],
                           data=padded.tobytes())


@pytest.mark.parametrize("padding", [0, 3, 64])
@pytest.mark.parametrize("encoding", sorted(AS_SENT))
def test_colour_encodings_decode_to_the_same_bgr(encoding: str, padding: int) -> None:
    out = image_to_bgr(message(AS_SENT[encoding], encoding, padding))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, BGR)


@pytest.mark.parametrize("padding", [0, 1])
def test_mono8_is_replicated_to_three_channels(padding: int) -> None:
    gray = BGR[:, :, 0]
    out = image_to_bgr(message(gray, "mono8", padding))
    np.testing.assert_array_equal(out, np.dstack([gray] * 3))


def test_every_declared_encoding_is_tested() -> None:
    assert set(ENCODINGS) == set(AS_SENT) | {"mono8"}


def test_unpadded_bgr8_is_a_read_only_view_of_the_message() -> None:
    msg = SimpleNamespace(encoding="bgr8", height=5, width=7, step=21, data=bytearray(BGR.tobytes()))
    out = image_to_bgr(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    with pytest.raises(ValueError, match="read-only"):
        out[0, 0, 0] = 1


@pytest.mark.parametrize("change, reason", [
    (dict(encoding="16UC1"), "unsupported encoding '16UC1'"),
    (dict(width=0), "empty image"),
    (dict(step=20), "step 20 is smaller than width x channels = 21"),
    (dict(data=bytes(104)), "data holds 104 bytes, expected step x height = 21 x 5 = 105"),
    (dict(data=bytes(106)), "data holds 106 bytes"),
])
def test_malformed_images_are_refused_with_the_reason(change: dict, reason: str) -> None:
    msg = message(BGR, "bgr8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageDecodeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        image_to_bgr(msg)


def test_compressed_png_and_jpeg_decode() -> None:
    png = SimpleNamespace(format="png", data=cv2.imencode(".png", BGR)[1].tobytes())
    np.testing.assert_array_equal(compressed_to_bgr(png), BGR)
    smooth = cv2.resize(BGR, (64, 48), interpolation=cv2.INTER_CUBIC)
    jpeg = SimpleNamespace(format="jpeg", data=cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    assert np.abs(compressed_to_bgr(jpeg).astype(int) - smooth).mean() < 4


@pytest.mark.parametrize("data", [b"", b"not an image at all"])
def test_corrupt_compressed_images_are_refused(data: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="cannot decode CompressedImage"):
        compressed_to_bgr(SimpleNamespace(format="jpeg", data=data))
