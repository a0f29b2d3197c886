"""Monocular depth models from transformers (Depth Anything v1 / v2, ZoeDepth): one implementation of the
model contract (vision_factory.models), one object per family, named by the manifests as
`vision_factory.models.transformers_depth:DEPTH_ANYTHING` and `...:ZOEDEPTH`.

Weights and export sizes are handled as for every transformers checkpoint (transformers_checkpoints).
Pre- and post-processing are the image processor's (depth_processing), so output pixel (u, v) is input
pixel (u, v) and the depth map is the depth-estimation pipeline's; the onnx and openvino nodes need neither
torch nor transformers once the export is cached.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from vision_factory.backends.session import Session
from vision_factory.depth import METRIC, RELATIVE, DepthMap
from vision_factory.models.depth_processing import ImageProcessing
from vision_factory.models.transformers_checkpoints import TransformersCheckpoint, network_input_hw

INPUT_NAME, OUTPUT_NAME = "pixel_values", "predicted_depth"


@dataclass(frozen=True)
class DepthFamily(TransformersCheckpoint):
    """One transformers depth architecture: the config.model_type of its checkpoints, whether they predict
    metric depth or relative inverse depth, and its image processor's settings where a checkpoint (or an
    .onnx file exported elsewhere) does not say."""

    model_type: str
    processing: ImageProcessing  # the published checkpoints' preprocessor_config.json
    always_metric: bool = False  # ZoeDepth; Depth Anything says so in config.depth_estimation_type

    requirements = "depth.txt"

    def load_torch(self, weights: Path, options: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
        """The network returning predicted_depth (1, h, w) for pixel_values (1, 3, h, w), and its metadata.

        Code shipped with a checkpoint runs only with trust_remote_code; the checkpoint must be of this
        family either way."""
        import torch

        config, network = self.load_pretrained(weights, options, "AutoModelForDepthEstimation")

        class PredictedDepth(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
                return self.network(pixel_values=pixel_values).predicted_depth

        metric = self.always_metric or getattr(config, "depth_estimation_type", RELATIVE) == METRIC
        return PredictedDepth(), {"depth_kind": METRIC if metric else RELATIVE, "model_type": config.model_type,
                                  "image_processing": self.processing.read(weights).to_json()}

    def export_onnx(self, weights: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
        """A fixed-size ONNX file (1, 3, input_height, input_width) -> (1, input_height, input_width), with
        the depth kind in its metadata."""
        import torch

        module, model_metadata = self.load_torch(weights, options)
        dummy = torch.zeros(1, 3, int(options["input_height"]), int(options["input_width"]))
        return self.export_torchscript(module, (dummy,), dst, [INPUT_NAME], [OUTPUT_NAME], model_metadata)

    def build_model(self, sessions: Mapping[str, Session], metadata: Mapping[str, Mapping[str, str]],
                    options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)) -> "DepthEstimator":
        return DepthEstimator(sessions["model"], metadata["model"], self, options, logger)


class DepthEstimator:
    """Preprocess as the checkpoint's image processor does, run, bring the prediction back to the frame."""

    labels: tuple[str, ...] = ()

    def __init__(self, session: Session, metadata: Mapping[str, str], family: DepthFamily,
                 options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)):
        self.session = session
        self.processing = (ImageProcessing.from_json(metadata["image_processing"]) if "image_processing" in metadata
                           else family.processing)
        # None: sized per frame as the processor would (a model that takes any size, no size requested)
        self.input_hw = network_input_hw(session, options, logger)
        if "depth_kind" not in metadata:
            logger.warning("the model does not say whether it predicts metric depth: published as relative")
        self.kind = metadata.get("depth_kind", RELATIVE)

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR (H, W, 3) uint8 -> the network's (1, 3, h, w) float32 input."""
        return self.processing.preprocess(image_bgr, self.input_hw or self.processing.network_size(image_bgr.shape[:2]))

    def __call__(self, image_bgr: np.ndarray) -> DepthMap:
        prediction = self.session.run({self.session.input_name: self.preprocess(image_bgr)})[0]
        prediction = prediction.reshape(prediction.shape[-2:])
        if not np.isfinite(prediction).all():
            raise ValueError("the model output contains NaN or Inf (a broken export or a numeric overflow)")
        return DepthMap(self.processing.postprocess(prediction, image_bgr.shape[:2]), self.kind)

    def option_problem(self, name: str, value: Any) -> str:
        return ""


# Depth Anything v1 and v2 share the architecture (DepthAnythingForDepthEstimation) and processor.
DEPTH_ANYTHING = DepthFamily("depth_anything", ImageProcessing(
    size_hw=(518, 518), keep_aspect_ratio=True, multiple=14, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
ZOEDEPTH = DepthFamily("zoedepth", ImageProcessing(
    size_hw=(384, 512), keep_aspect_ratio=True, multiple=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    resample=Image.Resampling.BILINEAR, reflection_padding=True, corner_aligned=True), always_metric=True)
