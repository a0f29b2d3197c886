"""Weights + backend + parameter values -> a ready model, independent of ROS."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vision_factory.artifacts import Artifact, prepare_artifact
from vision_factory.backends import Backend, get_backend
from vision_factory.export_cache import ExportCache
from vision_factory.manifest import Manifest


WARMUP_IMAGE_HWC = (480, 640, 3)


@dataclass
class Runner:
    """A model bound to a backend session. Call it with a BGR image and the frame options."""

    manifest: Manifest
    backend: Backend
    artifact: Artifact
    session: Any
    model: Any

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.labels

    def frame_options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest parameters the model reads every frame, taken from `values`."""
        return {p.name: values[p.name] for p in self.manifest.parameters if p.applies == "frame"}


def build_runner(manifest: Manifest, backend_name: str, values: Mapping[str, Any],
                 logger: Any = logging.getLogger(__name__), on_export: Callable[[], None] | None = None) -> Runner:
    """Resolve the weights, export or load the backend's artifact, open the session and build the model.

    `values` holds every parameter the node declared (common, backend and manifest ones); `on_export()`
    is called if an export into the cache starts.
    """
    backend = get_backend(backend_name)
    model_module = manifest.load_module()
    cache = ExportCache(values.get("cache_dir") or None)
    weights = model_module.resolve_weights(values.get("model") or manifest.default_weights,
                                           cache.root / "weights")
    options = {p.name: values[p.name] for p in manifest.parameters if p.applies != "frame"}
    backend_options = backend.options(values)
    artifact = prepare_artifact(model_module, manifest.name, backend, Path(weights), options, backend_options,
                                cache, logger, on_export)
    session_class = backend.session_class()
    if artifact.module is not None:
        session = session_class(artifact.path, artifact.module, backend_options, backend.expect_rocm, logger)
    else:
        session = session_class(artifact.path, backend_options, logger)
    model = model_module.Model(session, artifact.metadata, options, logger)
    # Runtimes allocate and prepack on the first inference (0.3-0.5 s here): pay it now, off the frame path.
    model(np.zeros(WARMUP_IMAGE_HWC, np.uint8))
    return Runner(manifest, backend, artifact, session, model)


def default_runner(model: str, backend: str, weights: Path, cache_dir: Path,
                   logger: Any = logging.getLogger(__name__)) -> Runner:
    """The runner a freshly generated <model>_<backend> node builds for `weights` (every other parameter
    at its default), exporting into `cache_dir`."""
    from vision_factory.generator import plan_package  # the generator owns the merged parameter list
    from vision_factory.manifest import load_manifest

    values = {**plan_package(model, backend).defaults(), "model": str(weights), "cache_dir": str(cache_dir)}
    return build_runner(load_manifest(model), backend, values, logger)
