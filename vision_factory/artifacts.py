"""Weights -> the artifact a backend loads, exporting into the cache on first use.

ONNX-based backends: a .onnx file is used as it is by the onnx backend; a checkpoint is exported to
ONNX by the model module; backends with a converter (OpenVINO IR, TensorRT engine) convert that ONNX.
One cache entry per backend artifact, keyed by everything it depends on. Checkpoint backends (PyTorch)
load the weights directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from vision_factory.backends import Backend
from vision_factory.errors import ConfigError
from vision_factory.export_cache import ExportCache, sha256_path


@dataclass(frozen=True)
class Artifact:
    """What a session opens: `path` (or an already loaded PyTorch `module`) and the model's metadata
    (e.g. class names). `exported` is True when this launch had to export. `name`: the model's, or
    "<model>.<weights parameter>" for its other weights (what the cache and a model repository call it)."""

    path: Path
    metadata: dict[str, str]
    exported: bool
    name: str
    module: Any = None


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """The custom metadata of an ONNX file (ultralytics stores class names and input size there)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others for a file that is not ONNX
        raise ConfigError(f"'{path}' is not a readable ONNX model: {e}") from e
    if not model.graph.node:  # protobuf parses an empty file as an empty model
        raise ConfigError(f"'{path}' is not a readable ONNX model: it holds no graph")
    return {prop.key: prop.value for prop in model.metadata_props}


def prepare_artifact(model: Any, model_name: str, backend: Backend, weights: Path,
                     options: Mapping[str, Any], backend_options: Mapping[str, Any],
                     cache: ExportCache, logger: Any, on_export: Callable[[], None] | None = None) -> Artifact:
    """The artifact of `weights` for `backend`, from the cache or exported now (`on_export()` first)."""
    is_onnx, is_checkpoint = weights.suffix == ".onnx", model.is_checkpoint(weights)
    if not is_onnx and not is_checkpoint:
        checkpoints = f" or {model.CHECKPOINTS}" if model.CHECKPOINTS else ""
        raise ConfigError(f"'{weights}' is not an ONNX file (.onnx){checkpoints}")
    if backend.loads == "checkpoint":
        if not is_checkpoint:
            raise ConfigError(f"the {backend.name} backend runs PyTorch weights ({model.CHECKPOINTS}); "
                              f"'{weights}' is not one")
        module, metadata = model.load_torch(weights, options)
        return Artifact(weights, metadata, exported=False, name=model_name, module=module)
    if is_onnx and backend.converter is None:
        return Artifact(weights, read_onnx_metadata(weights), exported=False, name=model_name)

    fields = {"model": model_name, "weights_sha256": sha256_path(weights), "weights_format": weights.suffix,
              "backend": backend.name, "options": dict(options), **backend.runtime_fields(backend_options)}
    if not is_onnx:
        fields.update(model.exporter_fields())

    def build(dst: Path) -> dict[str, Any]:
        converts = backend.converter is not None
        onnx_path = weights if is_onnx else (dst.with_name("source.onnx") if converts else dst)
        extra: dict[str, Any] = {}
        logger.info(f"first launch with these weights: exporting {weights.name} for the {backend.name} "
                    f"backend into {dst.parent.parent}")
        if not is_onnx:
            extra.update(model.export_onnx(weights, onnx_path, options, logger))
        extra["model_metadata"] = read_onnx_metadata(onnx_path)
        if converts:
            extra.update(backend.convert(onnx_path, dst, backend_options, logger))
            if onnx_path != weights:
                onnx_path.unlink()
        return extra

    entry = cache.get_or_build(fields, backend.artifact_filename, build, logger, on_export)
    if not entry.built:
        logger.info(f"loaded the cached {backend.name} export {entry.path}")
    return Artifact(entry.path, dict(entry.metadata["model_metadata"]), exported=entry.built, name=model_name)
