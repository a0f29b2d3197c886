"""The weights handling of ultralytics YOLO detectors (vision_factory.models.WeightsHandler): .pt
checkpoints, loaded with ultralytics' restricted unpickling and exported to ONNX with ultralytics; ONNX files
used as they are; bare names (yolov8n.pt) downloaded by ultralytics. ultralytics and torch are imported
only inside the functions that need them: an onnx or openvino node never imports them.
"""
from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from vision_factory.errors import ConfigError, file_problem

CHECKPOINT_SUFFIXES = (".pt",)
CHECKPOINTS = "a checkpoint (.pt)"

# A .pt file is a pickle, and unpickling can run code. ultralytics' restricted loading (torch.load with
# weights_only=True and an allow-list of its model classes) is switched on by this flag, which ultralytics
# reads once, when it is first imported: so it is set here, before any import of it.
os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"


def weights_problem(model: str) -> str:
    """'' if `model` is a non-empty file or a bare name ultralytics may download (yolov8n.pt), else why not."""
    path = Path(model).expanduser()
    if not path.exists() and path.parent == Path(".") and path.suffix in CHECKPOINT_SUFFIXES:
        return ""
    return file_problem(model)


def resolve_weights(model: str, download_dir: Path) -> Path:
    """`model` as a readable file, or a bare ultralytics name (e.g. yolov8n.pt) downloaded into download_dir."""
    problem = weights_problem(model)
    if problem:
        raise ConfigError(problem)
    path = Path(model).expanduser()
    if path.is_file():
        return path
    try:
        from ultralytics.utils.downloads import attempt_download_asset
    except ImportError as e:
        raise ConfigError(f"model '{model}' is not a file, and downloading it needs ultralytics") from e
    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        downloaded = Path(attempt_download_asset(str(download_dir / path.name)))
    except Exception as e:  # ultralytics raises bare Exceptions for network failures
        raise ConfigError(f"model '{model}' is not a file and could not be downloaded: {e}") from e
    if not downloaded.is_file():
        raise ConfigError(f"model '{model}' is not a file and could not be downloaded")
    return downloaded


def is_checkpoint(weights: Path) -> bool:
    return weights.suffix in CHECKPOINT_SUFFIXES


def exporter_fields() -> dict[str, str]:
    """Versions an export depends on, read from package metadata: a warm start must not import torch."""
    return {name: metadata.version(name) for name in ("ultralytics", "torch")}


def load_checkpoint(weights: Path, shown_as: Path | None = None) -> Any:
    """An ultralytics YOLO model from a .pt file, unpickled with restricted loading: a checkpoint that
    references anything but ultralytics/torch model classes is refused (ConfigError), never executed.
    Errors name the file as `shown_as` (the user's path when `weights` is a working copy)."""
    import torch
    import ultralytics.utils
    from ultralytics import YOLO

    # Fail closed rather than unpickle without the allow-list.
    if not ultralytics.utils.SAFE_LOAD:
        raise ConfigError("ultralytics was imported before vision_factory could switch on its restricted "
                          "checkpoint loading: set ULTRALYTICS_SAFE_LOAD=1 in the environment")
    if not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):  # ultralytics' own condition
        raise ConfigError(f"restricted checkpoint loading needs PyTorch 2.6 or later (this is {torch.__version__})")
    try:
        return YOLO(str(weights))
    except (TypeError, ModuleNotFoundError) as e:  # how ultralytics reports a refused or unreadable checkpoint
        reason = str(e).splitlines()[0].replace("ERROR ❌️", "").replace(str(weights), "the file").strip()
        raise ConfigError(f"refused to load '{shown_as or weights}': {reason}") from e


def export_onnx(weights: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
    """Export a .pt checkpoint to a fixed-size ONNX file at `dst` with ultralytics (no NMS in the graph); with
    max_batch_size above 1, with dynamic axes (ultralytics makes batch, height and width dynamic together)."""
    # ultralytics writes next to its input: work on a copy so read-only weight folders are fine.
    source = dst.with_name("source" + weights.suffix)
    shutil.copyfile(weights, source)
    try:
        exported = load_checkpoint(source, shown_as=weights).export(
            format="onnx", imgsz=int(options["imgsz"]), dynamic=int(options.get("max_batch_size", 1)) > 1,
            simplify=True, nms=False, verbose=False)
        shutil.move(exported, dst)
    finally:
        source.unlink(missing_ok=True)
    return {"exporter": "ultralytics", **exporter_fields()}


def load_torch(weights: Path, options: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
    """The fused detection network, returning the raw head output as the ONNX export does."""
    import torch

    network = load_checkpoint(weights).model.fuse(verbose=False)

    class RawHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            output = self.network(images)
            return output[0] if isinstance(output, (tuple, list)) else output

    return RawHead(), {"names": repr(dict(network.names))}
