"""What transformers' depth image processors do to a frame before the network and to its prediction after,
in numpy and OpenCV: the onnx and openvino nodes publish what `pipeline("depth-estimation")` publishes
without importing torch or transformers.

DPTImageProcessor (Depth Anything): resize keeping the aspect ratio ("scale as little as possible" towards
`size`) to multiples of `ensure_multiple_of` with antialiasing (torchvision's, which reproduces PIL's: PIL
resizes here), the prediction resized back to the frame (bicubic). ZoeDepthImageProcessor: pad the frame
by reflection, int(sqrt(side / 2) * 3) pixels on each side, size the padded frame the same way and resize
it bilinearly with corners aligned; the prediction is resized to the padded frame (bicubic) and the
padding cut off.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
from PIL import Image

from vision_factory.errors import ConfigError

PROCESSOR_CONFIG = "preprocessor_config.json"  # what save_pretrained writes beside the weights


class ProcessorSettings:
    """What every image processor's settings class (a frozen dataclass) shares: reading the checkpoint's
    preprocessor_config.json, and a JSON form for the export's metadata, so a cached export needs no
    checkpoint folder to be preprocessed for."""

    @staticmethod
    def processor_config(weights: Path) -> tuple[Path, Mapping[str, Any]] | None:
        """(path, contents) of the preprocessor_config.json beside `weights`, None if there is none."""
        path = weights / PROCESSOR_CONFIG
        if not weights.is_dir() or not path.is_file():
            return None
        return path, json.loads(path.read_text())

    def bilinear_config(self, weights: Path) -> tuple[Path, Mapping[str, Any]] | None:
        """processor_config, refusing a checkpoint whose processor resamples other than bilinearly (the only
        resampling the families that call this repeat)."""
        found = self.processor_config(weights)
        if found is not None and found[1].get("resample", Image.Resampling.BILINEAR) != Image.Resampling.BILINEAR:
            raise ConfigError(f"{found[0]}: only bilinear resampling (resample 2) is supported for this model")
        return found

    def normalisation(self, config: Mapping[str, Any]) -> dict[str, tuple[float, ...]]:
        """The `mean` and `std` fields as a processor config overrides them."""
        return {"mean": tuple(config.get("image_mean", self.mean)), "std": tuple(config.get("image_std", self.std))}

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Any:
        values = json.loads(text)
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


@dataclass(frozen=True)
class ImageProcessing(ProcessorSettings):
    """A checkpoint's image processor settings, as far as the node repeats them."""

    size_hw: tuple[int, int]  # `size`: the target a frame is scaled towards
    keep_aspect_ratio: bool
    multiple: float  # `ensure_multiple_of`
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = Image.Resampling.BICUBIC  # `resample`, a PIL filter number
    reflection_padding: bool = False  # ZoeDepth's `do_pad`
    corner_aligned: bool = False  # ZoeDepth resizes with align_corners=True and no antialiasing

    def read(self, weights: Path) -> "ImageProcessing":
        """These settings as the preprocessor_config.json beside `weights` overrides them (if there is one)."""
        found = self.processor_config(weights)
        if found is None:
            return self
        path, config = found
        if config.get("do_pad") and not self.reflection_padding:
            raise ConfigError(f"{path}: padding to a size divisor (do_pad) is not supported for this model")
        if self.corner_aligned and config.get("resample", self.resample) != self.resample:
            raise ConfigError(f"{path}: only bilinear resampling (resample 2) is supported for this model")
        size = config.get("size") or {}
        return replace(
            self,
            size_hw=(int(size.get("height", self.size_hw[0])), int(size.get("width", self.size_hw[1]))),
            keep_aspect_ratio=bool(config.get("keep_aspect_ratio", self.keep_aspect_ratio)),
            multiple=float(config.get("ensure_multiple_of", self.multiple)),
            **self.normalisation(config), resample=int(config.get("resample", self.resample)),
            reflection_padding=bool(config.get("do_pad", self.reflection_padding)))

    def padding(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """Rows and columns of reflection added on each side of a frame of this size."""
        if not self.reflection_padding:
            return 0, 0
        return int(math.sqrt(frame_hw[0] / 2) * 3), int(math.sqrt(frame_hw[1] / 2) * 3)

    def network_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) the processor resizes a frame of this size to, as get_resize_output_image_size does."""
        pad_h, pad_w = self.padding(frame_hw)
        height, width = frame_hw[0] + 2 * pad_h, frame_hw[1] + 2 * pad_w
        scale_h, scale_w = self.size_hw[0] / height, self.size_hw[1] / width
        if self.keep_aspect_ratio:  # scale as little as possible
            scale_h = scale_w = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h

        def to_multiple(value: float) -> int:
            return int(round(value / self.multiple) * self.multiple)  # half to even, as both processors round

        return to_multiple(scale_h * height), to_multiple(scale_w * width)

    def preprocess(self, image_bgr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """BGR (H, W, 3) uint8 -> (1, 3, h, w) float32 RGB: padded, resized to size_hw, rescaled, normalised."""
        pad_h, pad_w = self.padding(image_bgr.shape[:2])
        if pad_h or pad_w:  # torchvision's "reflect" repeats no edge pixel: OpenCV's REFLECT_101
            image_bgr = cv2.copyMakeBorder(image_bgr, pad_h, pad_h, pad_w, pad_w, cv2.BORDER_REFLECT_101)
        if self.corner_aligned:
            resized = resize_corner_aligned(image_bgr[:, :, ::-1].astype(np.float32), size_hw)
        else:
            # OpenCV has no antialiased bicubic: its area resampling differs from the processor's by up to
            # 25 grey levels on bus.jpg, PIL by 1.
            resized = pil_resized_rgb(image_bgr, size_hw, self.resample)
        return normalised_blob(resized, self.mean, self.std)

    def postprocess(self, prediction: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """The network's (h, w) prediction at the frame's size: bicubic (OpenCV's kernel is PyTorch's,
        a = -0.75, half-pixel centres), through the padded frame when there is padding."""
        pad_h, pad_w = self.padding(frame_hw)
        padded_hw = (frame_hw[0] + 2 * pad_h, frame_hw[1] + 2 * pad_w)
        values = cv2.resize(prediction.astype(np.float32), padded_hw[::-1], interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(values[pad_h:pad_h + frame_hw[0], pad_w:pad_w + frame_hw[1]])


def pil_resized_rgb(image_bgr: np.ndarray, size_hw: tuple[int, int], resample: int) -> np.ndarray:
    """A BGR uint8 image resized by PIL (`resample`, a PIL filter number) to size_hw: (h, w, 3) float32 RGB.
    PIL's antialiased filters are what transformers' torchvision processors reproduce, in the same two passes:
    the width first, then the height (PIL alone may take the other order, which rounds differently: one grey
    level on 15% of the pixels of a frame upscaled in one axis and downscaled in the other)."""
    rgb = Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1]))
    filter_ = Image.Resampling(resample)
    wide = rgb.resize((size_hw[1], rgb.height), filter_)
    return np.asarray(wide.resize((size_hw[1], size_hw[0]), filter_), np.float32)


def normalised_blob(rgb: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float]) -> np.ndarray:
    """An (h, w, 3) RGB image of 0..255 values -> (1, 3, h, w) float32, rescaled to 0..1 and normalised by
    mean and std, as transformers' image processors do."""
    scale = (1.0 / (255.0 * np.array(std))).astype(np.float32)
    offset = (-np.array(mean) / np.array(std)).astype(np.float32)
    return np.ascontiguousarray((rgb * scale + offset).transpose(2, 0, 1)[None])


def resize_corner_aligned(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, C) float image with the corner pixels' centres aligned, as
    torch.nn.functional.interpolate(align_corners=True) does (OpenCV has no such mode)."""
    for axis, size in enumerate(size_hw):
        source = np.linspace(0.0, image.shape[axis] - 1, size)
        low = np.minimum(source.astype(np.int64), image.shape[axis] - 2) if image.shape[axis] > 1 else \
            np.zeros(size, np.int64)
        weight = (source - low).astype(np.float32)
        shape = [1] * image.ndim
        shape[axis] = size
        weight = weight.reshape(shape)
        high = np.minimum(low + 1, image.shape[axis] - 1)
        image = np.take(image, low, axis) * (1 - weight) + np.take(image, high, axis) * weight
    return image
