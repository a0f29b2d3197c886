"""Weights that are transformers checkpoints, shared by the model families built on transformers (depth,
Grounding DINO): a model folder (save_pretrained), an .onnx file exported before, or a Hugging Face model id
downloaded once into the cache. Checkpoints that ship Python code load only with trust_remote_code.

Their exports have a fixed image size: by default the size the checkpoint's image processor gives the
camera's frames (the input_width and input_height options at 0, resolved per frame size by
options_for_frame: one cached export per size), else the size set.
"""
from __future__ import annotations

import re
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from vision_factory.backends.session import Session
from vision_factory.errors import ConfigError

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
OPSET = 17


def import_transformers(requirements: str) -> Any:
    """transformers, or a ConfigError naming the requirements file that installs it."""
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(f"loading or exporting a transformers checkpoint needs transformers and torch "
                          f"(pip install -r requirements/{requirements}): {e}") from e
    transformers.logging.disable_progress_bar()  # one bar per file loaded would fill the node's log
    return transformers


def input_size(options: Mapping[str, Any]) -> tuple[int, int] | None:
    """The network input (height, width) the options ask for; None for "as the processor sizes the frame"."""
    height, width = int(options["input_height"]), int(options["input_width"])
    return (height, width) if height and width else None


def network_input_hw(session: Session, options: Mapping[str, Any], logger: Any) -> tuple[int, int] | None:
    """The image size a model runs at: the session's when its input is fixed (saying so when the options
    ask for another), else the options'; None: sized per frame as the processor would."""
    requested = input_size(options)
    height, width = session.input_shape[2:4]
    if height > 0 and width > 0 and requested not in (None, (height, width)):
        logger.info(f"the model's input is fixed at {width}x{height}; input_width x input_height "
                    f"{requested[1]}x{requested[0]} does not apply")
    return (height, width) if height > 0 and width > 0 else requested


class FrameSizing(Protocol):
    """A checkpoint's image processor settings, as far as sizing a frame goes."""

    def read(self, weights: Path) -> "FrameSizing":
        """These settings as the preprocessor_config.json beside `weights` overrides them (if there is one)."""

    def network_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) the processor resizes a frame of this size to."""


class TransformersCheckpoint:
    """The WeightsHandler (and SizedByFrame) methods every transformers family shares (vision_factory.models).
    A subclass names its checkpoints' config.model_type (or several, in model_types), the requirements file
    that installs what exporting needs and its image processor's settings (`processing`)."""

    CHECKPOINTS = "a transformers model folder (save_pretrained)"
    model_type: str

    @property
    def model_types(self) -> tuple[str, ...]:
        """The config.model_type values of the checkpoints this family loads."""
        return (self.model_type,)
    requirements: str
    processing: FrameSizing

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

    def load_pretrained(self, weights: Path, options: Mapping[str, Any], auto_class: str) -> tuple[Any, Any]:
        """(config, network in eval mode) of the checkpoint folder, loaded with transformers' `auto_class`
        (e.g. "AutoModelForDepthEstimation"). It must be of one of this family's model_types; code shipped
        with it runs only when the trust_remote_code option allows it."""
        transformers = import_transformers(self.requirements)
        trust = bool(options.get("trust_remote_code", False))
        try:
            config = transformers.AutoConfig.from_pretrained(str(weights), trust_remote_code=trust)
            if config.model_type not in self.model_types:
                raise ConfigError(f"'{weights}' is a {config.model_type} checkpoint, not "
                                  f"{' or '.join(self.model_types)}")
            network = getattr(transformers, auto_class).from_pretrained(
                str(weights), config=config, trust_remote_code=trust).eval()
        except ConfigError:
            raise
        except (ValueError, OSError) as e:  # transformers' way of refusing remote code or a broken folder
            if not trust and "custom code" in str(e):
                raise ConfigError(f"'{weights}' ships Python code that loading it would run: refused (set the "
                                  f"trust_remote_code parameter to true to allow it)") from e
            raise ConfigError(f"cannot load '{weights}': {str(e).splitlines()[0]}") from e
        return config, network

    def export_torchscript(self, module: Any, args: tuple[Any, ...], dst: Path, input_names: list[str],
                           output_names: list[str], model_metadata: Mapping[str, str],
                           dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
                           repair: Callable[[Any], None] | None = None) -> dict[str, str]:
        """Export `module` called on `args` to dst with the TorchScript exporter (dynamo=False: it needs no
        onnxscript, and its graphs run on every backend), `model_metadata` in the file's metadata and
        `repair(model)` applied to the graph (an onnx ModelProto, changed in place) in the same load and save;
        return the exporter's versions for the cache entry."""
        import onnx
        import torch

        torch.onnx.export(module, args, str(dst), input_names=input_names, output_names=output_names,
                          dynamic_axes=dict(dynamic_axes or {}), opset_version=OPSET, dynamo=False)
        exported = onnx.load(str(dst))
        for key, value in model_metadata.items():
            exported.metadata_props.add(key=key, value=value)
        if repair is not None:
            repair(exported)
        onnx.save(exported, str(dst))
        return {"exporter": "torch.onnx (TorchScript)", **self.exporter_fields()}


class MultiNetworkCheckpoint(TransformersCheckpoint):
    """A transformers family whose checkpoint is exported as several networks (NETWORKS) at one fixed image size:
    its weights are the checkpoint itself (one .onnx file cannot be every network), whatever the frame size.
    A subclass names itself in `family_name` for its messages."""

    family_name: str

    def weights_problem(self, model: str) -> str:
        """'' if `model` is a transformers model folder or a Hugging Face model id."""
        path = Path(model).expanduser()
        if path.is_dir() or (not path.exists() and HUB_ID.match(model)):
            return ""
        return f"model '{model}' is neither a transformers {self.family_name} model folder nor a Hugging Face model id"

    def options_for_frame(self, weights: Path, options: Mapping[str, Any],
                          frame_hw: tuple[int, int]) -> dict[str, Any]:
        """The same for every frame size: the processor brings every frame to one size."""
        return dict(options)
