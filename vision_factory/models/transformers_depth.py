"""Monocular depth models from transformers (Depth Anything v1 / v2, ZoeDepth): one implementation of the
model contract (vision_factory.models), one object per family, named by the manifests as
`vision_factory.models.transformers_depth:DEPTH_ANYTHING` and `...:ZOEDEPTH`.

Weights are a transformers model folder (save_pretrained) or a Hugging Face model id, downloaded once into
the cache. Checkpoints that need code from their repository load only when the node's trust_remote_code
parameter allows it. Each export has a fixed input size: by default the size the checkpoint's image
processor gives the camera's frames (input_width and input_height 0, resolved per frame size by
options_for_frame, one cached export per size), else the size set. Pre- and post-processing are the image
processor's (depth_processing), so output pixel (u, v) is input pixel (u, v) and the depth map is the
depth-estimation pipeline's; the onnx and openvino nodes need neither torch nor transformers once the
export is cached.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from vision_factory.backends.session import Session
from vision_factory.depth import METRIC, RELATIVE, DepthMap
from vision_factory.errors import ConfigError
from vision_factory.models.depth_processing import ImageProcessing

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "pixel_values", "predicted_depth"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(f"loading or exporting a transformers depth checkpoint needs transformers and torch "
                          f"(pip install -r requirements/depth.txt): {e}") from e
    transformers.logging.disable_progress_bar()  # one bar per file loaded would fill the node's log
    return transformers


@dataclass(frozen=True)
class DepthFamily:
    """One transformers depth architecture: the config.model_type of its checkpoints, whether they predict
    metric depth or relative inverse depth, and its image processor's settings where a checkpoint (or an
    .onnx file exported elsewhere) does not say."""

    model_type: str
    processing: ImageProcessing  # the published checkpoints' preprocessor_config.json
    always_metric: bool = False  # ZoeDepth; Depth Anything says so in config.depth_estimation_type

    CHECKPOINTS = "a transformers model folder (save_pretrained)"

    def is_checkpoint(self, weights: Path) -> bool:
        return weights.is_dir()

    def weights_problem(self, model: str) -> str:
        """'' if `model` is a folder, an .onnx file exported before, or a Hugging Face model id."""
        path = Path(model).expanduser()
        if path.is_dir() or (path.is_file() and path.suffix == ".onnx") or (not path.exists() and HUB_ID.match(model)):
            return ""
        return (f"model '{model}' is neither a transformers model folder, an .onnx file nor a Hugging Face "
                f"model id (organisation/name)")

    def resolve_weights(self, model: str, download_dir: Path) -> Path:
        """A local folder or file as it is; a model id downloaded once into download_dir/huggingface."""
        problem = self.weights_problem(model)
        if problem:
            raise ConfigError(problem)
        path = Path(model).expanduser()
        if path.exists():
            return path
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(repo_id=model, cache_dir=str(download_dir / "huggingface")))
        except Exception as e:  # offline mode, network, unknown repository: huggingface_hub has many types
            raise ConfigError(f"model '{model}' could not be downloaded from the Hugging Face Hub: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e

    def options_for_frame(self, weights: Path, options: Mapping[str, Any],
                          frame_hw: tuple[int, int]) -> dict[str, Any]:
        """`options` with the input size the checkpoint's processor gives frames of this size, when the
        options leave it to the camera (0); an .onnx file's input size is its own."""
        if weights.suffix == ".onnx" or input_size(options) is not None:
            return dict(options)
        height, width = self.processing.read(weights).network_size(frame_hw)
        return {**options, "input_height": height, "input_width": width}

    def exporter_fields(self) -> dict[str, str]:
        """Versions an export depends on, from package metadata (a warm start imports neither)."""
        return {name: package_metadata.version(name) for name in ("transformers", "torch")}

    def load_torch(self, weights: Path, options: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
        """The network returning predicted_depth (1, h, w) for pixel_values (1, 3, h, w), and its metadata.

        Code shipped with a checkpoint runs only with trust_remote_code; the checkpoint must be of this
        family either way."""
        transformers = _transformers()
        import torch

        trust = bool(options.get("trust_remote_code", False))
        try:
            config = transformers.AutoConfig.from_pretrained(str(weights), trust_remote_code=trust)
            if config.model_type != self.model_type:
                raise ConfigError(f"'{weights}' is a {config.model_type} checkpoint, not {self.model_type}")
            network = transformers.AutoModelForDepthEstimation.from_pretrained(
                str(weights), config=config, trust_remote_code=trust).eval()
        except ConfigError:
            raise
        except (ValueError, OSError) as e:  # transformers' way of refusing remote code or a broken folder
            if not trust and "custom code" in str(e):
                raise ConfigError(f"'{weights}' ships Python code that loading it would run: refused (set the "
                                  f"trust_remote_code parameter to true to allow it)") from e
            raise ConfigError(f"cannot load '{weights}': {str(e).splitlines()[0]}") from e

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
        import onnx
        import torch

        module, model_metadata = self.load_torch(weights, options)
        dummy = torch.zeros(1, 3, int(options["input_height"]), int(options["input_width"]))
        # dynamo=False: the TorchScript exporter needs no onnxscript, and its graphs run on every backend.
        torch.onnx.export(module, (dummy,), str(dst), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=OPSET, dynamo=False)
        exported = onnx.load(str(dst))
        for key, value in model_metadata.items():
            exported.metadata_props.add(key=key, value=value)
        onnx.save(exported, str(dst))
        return {"exporter": "torch.onnx (TorchScript)", **self.exporter_fields()}

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
        requested = input_size(options)
        height, width = session.input_shape[2:4]
        if height > 0 and width > 0 and requested not in (None, (height, width)):
            logger.info(f"the model's input is fixed at {width}x{height}; input_width x input_height "
                        f"{requested[1]}x{requested[0]} does not apply")
        # None: sized per frame as the processor would (a model that takes any size, no size requested)
        self.input_hw = (height, width) if height > 0 and width > 0 else requested
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


def input_size(options: Mapping[str, Any]) -> tuple[int, int] | None:
    """The network input (height, width) the options ask for; None for "as the processor sizes the frame"."""
    height, width = int(options["input_height"]), int(options["input_width"])
    return (height, width) if height and width else None


# Depth Anything v1 and v2 share the architecture (DepthAnythingForDepthEstimation) and processor.
DEPTH_ANYTHING = DepthFamily("depth_anything", ImageProcessing(
    size_hw=(518, 518), keep_aspect_ratio=True, multiple=14, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
ZOEDEPTH = DepthFamily("zoedepth", ImageProcessing(
    size_hw=(384, 512), keep_aspect_ratio=True, multiple=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    resample=Image.Resampling.BILINEAR, reflection_padding=True, corner_aligned=True), always_metric=True)
