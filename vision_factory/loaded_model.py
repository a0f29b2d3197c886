"""Weights + backend + parameter values -> a ready model, independent of ROS."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vision_factory.artifacts import Artifact, prepare_artifact
from vision_factory.backends import Backend
from vision_factory.export_cache import ExportCache
from vision_factory.manifest import Manifest, load_manifest
from vision_factory.parameters import node_parameters


WARMUP_IMAGE_HWC = (480, 640, 3)


@dataclass
class LoadedModel:
    """A model bound to its backend sessions (one per set of weights the manifest names, the `model`
    parameter's first). Call `model` with a BGR image and the frame options."""

    manifest: Manifest
    backend: Backend
    artifacts: dict[str, Artifact]
    sessions: dict[str, Any]
    model: Any
    weights: dict[str, str]  # weights parameter -> the value its session was built from

    @property
    def session(self) -> Any:
        """The session of the `model` weights: what the node reports as running."""
        return self.sessions["model"]

    @property
    def artifact(self) -> Artifact:
        """The artifact of the `model` weights."""
        return self.artifacts["model"]

    def frame_options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest parameters the model reads every frame, taken from `values`."""
        return {p.name: values[p.name] for p in self.manifest.parameters if p.applies == "frame"}


def model_options(manifest: Manifest, values: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest parameters that shape an export or a session (not read per frame, not weights)."""
    weights = {w.parameter for w in manifest.weights}
    return {p.name: values[p.name] for p in manifest.parameters if p.applies != "frame" and p.name not in weights}


def weights_given(manifest: Manifest, values: Mapping[str, Any]) -> dict[str, str]:
    """Per weights parameter: the file or model name `values` give it (its default when empty)."""
    return {w.parameter: values.get(w.parameter) or w.default for w in manifest.weights}


def prepare_artifacts(manifest: Manifest, backend: Backend, values: Mapping[str, Any], logger: Any,
                      on_export: Callable[[], None] | None = None) -> dict[str, Artifact]:
    """Per weights parameter of the manifest: resolve the weights it names, then load or export the
    backend's artifact of them through the cache."""
    cache = ExportCache(values.get("cache_dir") or None)
    options, backend_options = model_options(manifest, values), backend.options(values)
    artifacts, given = {}, weights_given(manifest, values)
    for weights in manifest.weights:
        module = weights.load_module()
        path = module.resolve_weights(given[weights.parameter], cache.root / "weights")
        # The cache key names the model, and which of its weights when it has several.
        name = manifest.name if weights.parameter == "model" else f"{manifest.name}.{weights.parameter}"
        artifacts[weights.parameter] = prepare_artifact(module, name, backend, Path(path), options, backend_options,
                                                        cache, logger, on_export)
    return artifacts


def load_model(manifest: Manifest, backend: Backend, values: Mapping[str, Any],
               logger: Any = logging.getLogger(__name__),
               on_export: Callable[[], None] | None = None) -> LoadedModel:
    """Resolve the weights, export or load the backend's artifacts, open the sessions and build the model.

    `values` holds every parameter the node declared (common, backend and manifest ones); `on_export()`
    is called if an export into the cache starts.
    """
    artifacts = prepare_artifacts(manifest, backend, values, logger, on_export)
    backend_options = backend.options(values)
    sessions = {role: backend.open(artifact, backend_options, logger) for role, artifact in artifacts.items()}
    model = manifest.load_module().build_model(
        sessions, {role: artifact.metadata for role, artifact in artifacts.items()},
        model_options(manifest, values), logger)
    # Runtimes allocate and prepack on the first inference (0.3-0.5 s here): pay it now, off the frame path.
    model(np.zeros(WARMUP_IMAGE_HWC, np.uint8))
    return LoadedModel(manifest, backend, artifacts, sessions, model, weights_given(manifest, values))


def load_default_model(model: str, backend: str, weights: Path | str, cache_dir: Path,
                       logger: Any = logging.getLogger(__name__), **overrides: Any) -> LoadedModel:
    """The model a freshly generated <model>_<backend> node builds for `weights` and the parameter values
    in `overrides` (every other parameter at its default), exporting into `cache_dir`."""
    manifest = load_manifest(model)
    backend_row = manifest.backend(backend)
    values = {**{p.name: p.default for p in node_parameters(manifest, backend_row)}, **overrides,
              "model": str(weights), "cache_dir": str(cache_dir)}
    return load_model(manifest, backend_row, values, logger)
