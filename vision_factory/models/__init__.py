"""Model families, and the contract their modules implement (written down as Protocols below).

A manifest names a model module and, per set of weights it loads, a weights module (the model module itself
for the `model` weights); either may be `module:object`, an object in a module that implements the contract
(one module serving several similar families, as transformers_depth does). A weights module is a
WeightsHandler (and may be SizedByFrame); the model module also has `build_model` (a ModelFamily), which
makes a FrameModel.

`options` are the manifest's parameters that are not read per frame (they shape an export or a session);
`frame_options` the others, passed to the frame model as keyword arguments.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np

from vision_factory.backends.session import Session
from vision_factory.errors import ConfigError, file_problem


class WeightsHandler(Protocol):
    """Turns a weights parameter's value into a file a backend can load (used by runner and artifacts)."""

    CHECKPOINTS: str  # what it exports to ONNX, for messages ("a checkpoint (.pt)"; "" if nothing)
    # Optional: the networks exported from one checkpoint, each its own artifact and session (e.g. an image
    # encoder run once a frame and a prompt decoder run per prompt batch). export_onnx and load_torch then
    # find which one in options["network"]; sessions are keyed "<weights parameter>.<network>".
    NETWORKS: tuple[str, ...]

    def is_checkpoint(self, weights: Path) -> bool:
        """Whether `weights` is exported to ONNX by export_onnx (and loaded by the PyTorch backends)."""

    def weights_problem(self, model: str) -> str:
        """'' if `model` names a usable file or a downloadable name, else why not (checked on `ros2 param set`)."""

    def resolve_weights(self, model: str, download_dir: Path) -> Path:
        """A weights path: the file itself, or what the model's library downloads into download_dir."""

    def export_onnx(self, weights: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
        """Write the checkpoint's ONNX export to dst; return the exporter versions (for the cache entry)."""

    def exporter_fields(self) -> dict[str, str]:
        """Versions an export depends on (part of its cache key); must not import torch."""

    def load_torch(self, weights: Path, options: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
        """(nn.Module, metadata), its forward returning the ONNX export's raw outputs; only for models whose
        cuda / rocm backends run PyTorch."""


class SizedByFrame(Protocol):
    """Optional on a WeightsHandler whose network input size follows the camera's (the depth models at input
    size 0): one export per frame size. The runtime prepares a model for the frames' size and rebuilds it
    when frames of a size needing other options arrive (loaded_model.LoadedModel.suits)."""

    def options_for_frame(self, weights: Path, options: Mapping[str, Any],
                          frame_hw: tuple[int, int]) -> dict[str, Any]:
        """`options` as an export for frames of frame_hw (height, width) needs them."""


class FrameModel(Protocol):
    """A model on its open sessions: one BGR frame in, one result (Detections, Poses, DepthMap) out."""

    labels: tuple[str, ...]  # class (or keypoint) names

    def __call__(self, image_bgr: np.ndarray, **frame_options: Any) -> Any:
        """Every frame option has a default: the runner warms a new model up with a blank image."""

    def option_problem(self, name: str, value: Any) -> str:
        """'' if a frame option's value suits this model (e.g. its class names), else why not."""


class BatchModel(FrameModel, Protocol):
    """Optional on a FrameModel that runs several frames (of a node's cameras) through one session run."""

    batch_size: int  # the most frames a batch holds (1: it cannot batch, e.g. a fixed-batch network)

    def batch(self, images_bgr: list[np.ndarray], **frame_options: Any) -> list[Any]:
        """One result per image, equal to what __call__ gives for each."""


class PromptedModel(FrameModel, Protocol):
    """Optional on a FrameModel whose classes are set by a frame option (an open-vocabulary detector's
    prompt): its `labels` are those of the last frame, and the node republishes its class map on a change."""

    def labels_for(self, frame_options: Mapping[str, Any]) -> tuple[str, ...]:
        """The class names of frames run with these options (the node passes all its parameter values)."""


class ModelFamily(Protocol):
    """The model module: builds the frame model once the backend sessions are open."""

    def build_model(self, sessions: Mapping[str, Session], metadata: Mapping[str, Mapping[str, str]],
                    options: Mapping[str, Any], logger: Any) -> FrameModel:
        """`sessions` and `metadata` (of each artifact, e.g. class names) are keyed by weights parameter
        ("<parameter>.<network>" for a weights handler of several NETWORKS)."""


class OnnxOnlyWeights:
    """The WeightsHandler of models whose weights are ONNX files: nothing is a checkpoint, so nothing is
    exported and there is no PyTorch path. Files are used as they are; a subclass may also accept names it
    downloads (weights_problem and resolve_weights)."""

    CHECKPOINTS = ""

    def is_checkpoint(self, weights: Path) -> bool:
        return False

    def weights_problem(self, model: str) -> str:
        return file_problem(model)

    def resolve_weights(self, model: str, download_dir: Path) -> Path:
        problem = self.weights_problem(model)
        if problem:
            raise ConfigError(problem)
        return Path(model).expanduser()
