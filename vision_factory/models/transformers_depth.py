"""Monocular depth models from transformers (Depth Anything v1 / v2, ZoeDepth): one implementation of the
model contract (vision_factory.models), one object per family, named by the manifests as
`vision_factory.models.transformers_depth:DEPTH_ANYTHING` and `...:ZOEDEPTH`.

Weights are a transformers model folder (save_pretrained) or a Hugging Face model id, downloaded once into
the cache. Checkpoints that need code from their repository load only when the node's trust_remote_code
parameter allows it. The network runs at a fixed input size (input_width x input_height, multiples of the
backbone's patch size): frames are resized to it and the prediction is resized back to the frame, so
output pixel (u, v) is input pixel (u, v). Preprocessing is the family's image processor's (resize,
rescale to [0, 1], normalise) in numpy: the onnx and openvino nodes need neither torch nor
transformers once the export is cached.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from vision_factory.backends.session import Session
from vision_factory.depth import METRIC, RELATIVE, DepthMap
from vision_factory.errors import ConfigError

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
    metric depth or relative inverse depth, and its image processor's normalisation."""

    model_type: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
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
        return PredictedDepth(), {"depth_kind": METRIC if metric else RELATIVE, "model_type": config.model_type}

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
    """Resize to the network's input, normalise, run, resize the prediction back to the frame."""

    labels: tuple[str, ...] = ()

    def __init__(self, session: Session, metadata: Mapping[str, str], family: DepthFamily,
                 options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)):
        self.session = session
        requested = (int(options["input_height"]), int(options["input_width"]))
        height, width = session.input_shape[2:4]
        if height > 0 and width > 0 and (height, width) != requested:
            logger.info(f"the model's input is fixed at {width}x{height}; input_width x input_height "
                        f"{requested[1]}x{requested[0]} does not apply")
        self.input_hw = (height, width) if height > 0 and width > 0 else requested
        if "depth_kind" not in metadata:
            logger.warning("the model does not say whether it predicts metric depth: published as relative")
        self.kind = metadata.get("depth_kind", RELATIVE)
        self._scale = (1.0 / (255.0 * np.array(family.std))).astype(np.float32)
        self._offset = (-np.array(family.mean) / np.array(family.std)).astype(np.float32)

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR (H, W, 3) uint8 -> (1, 3, h, w) float32 RGB, resized, rescaled and normalised."""
        height, width = self.input_hw
        # The processors resize with PIL's bicubic, which antialiases when shrinking: OpenCV's area
        # resampling is the close match there (1.6 grey levels mean difference on bus.jpg, plain bicubic
        # 5.6), its bicubic when enlarging (0.8).
        shrinking = height <= image_bgr.shape[0] and width <= image_bgr.shape[1]
        resized = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        rgb = resized[:, :, ::-1].astype(np.float32) * self._scale + self._offset
        return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])

    def __call__(self, image_bgr: np.ndarray) -> DepthMap:
        prediction = self.session.run({self.session.input_name: self.preprocess(image_bgr)})[0]
        prediction = prediction.reshape(prediction.shape[-2:])
        if not np.isfinite(prediction).all():
            raise ValueError("the model output contains NaN or Inf (a broken export or a numeric overflow)")
        # Bilinear, not bicubic: it cannot overshoot, so depth stays within the range the model predicted.
        height, width = image_bgr.shape[:2]
        values = cv2.resize(prediction.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return DepthMap(values, self.kind)

    def option_problem(self, name: str, value: Any) -> str:
        return ""


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Depth Anything v1 and v2 share the architecture (DepthAnythingForDepthEstimation) and processor.
DEPTH_ANYTHING = DepthFamily("depth_anything", IMAGENET_MEAN, IMAGENET_STD)
ZOEDEPTH = DepthFamily("zoedepth", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), always_metric=True)
