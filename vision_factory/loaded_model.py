"""Weights + backend + parameter values -> a ready model, independent of ROS."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vision_factory.artifacts import Artifact, prepare_artifact
from vision_factory.backends import Backend
from vision_factory.export_cache import ExportCache
from vision_factory.manifest import Manifest, load_manifest
from vision_factory.parameters import node_parameters


# The frame size a model is prepared for until frames say otherwise (what matters to models whose input size
# follows the camera's, e.g. depth at input size 0).
DEFAULT_FRAME_HW = (480, 640)


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
    frame_hw: tuple[int, int]  # the frame size it was prepared for
    export_options: dict[str, dict[str, Any]]  # per weights parameter: the options its artifact was made with
    sizing: Callable[[tuple[int, int]], dict[str, dict[str, Any]]]  # frame size -> export_options for it
    _suits: dict[tuple[int, int], bool] = field(default_factory=dict, repr=False)

    @property
    def session(self) -> Any:
        """The session of the `model` weights (its first network): what the node reports as running."""
        return next(iter(self.sessions.values()))

    @property
    def in_flight(self) -> int:
        """How many frames may run through the model at once: its sessions' fewest infer requests
        (Session.in_flight; 1 for a session that runs one call at a time)."""
        return min(getattr(session, "in_flight", 1) for session in self.sessions.values())

    @property
    def artifact(self) -> Artifact:
        """The artifact of the `model` weights (its first network)."""
        return next(iter(self.artifacts.values()))

    def suits(self, frame_hw: tuple[int, int]) -> bool:
        """Whether frames of this size run on this model as it should see them: False when its input size
        follows the camera's and frames of this size need another export."""
        if frame_hw not in self._suits:  # frame sizes are few: each is worked out once
            self._suits[frame_hw] = frame_hw == self.frame_hw or self.sizing(frame_hw) == self.export_options
        return self._suits[frame_hw]

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


def resolve_weights(manifest: Manifest, values: Mapping[str, Any]) -> dict[str, Path]:
    """Per weights parameter: the file or folder the value names (downloaded into the cache if need be)."""
    root, given = ExportCache(values.get("cache_dir") or None).root, weights_given(manifest, values)
    return {w.parameter: Path(w.load_module().resolve_weights(given[w.parameter], root / "weights"))
            for w in manifest.weights}


def export_options(manifest: Manifest, values: Mapping[str, Any], paths: Mapping[str, Path],
                   frame_hw: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """Per weights parameter: the options its artifact is made with for frames of frame_hw. The same for
    every frame size unless its weights module sizes the network by the camera (options_for_frame)."""
    options = model_options(manifest, values)
    result = {}
    for weights in manifest.weights:
        sized = getattr(weights.load_module(), "options_for_frame", None)
        result[weights.parameter] = sized(paths[weights.parameter], options, frame_hw) if sized else dict(options)
    return result


def networks(handler: Any) -> tuple[str, ...]:
    """The networks a weights handler exports from one checkpoint (models.WeightsHandler.NETWORKS): ("",)
    for one."""
    return tuple(getattr(handler, "NETWORKS", ("",)))


def prepare_artifacts(manifest: Manifest, backend: Backend, values: Mapping[str, Any], paths: Mapping[str, Path],
                      options: Mapping[str, Mapping[str, Any]], logger: Any,
                      on_export: Callable[[], None] | None = None) -> dict[str, Artifact]:
    """Per weights parameter of the manifest, and per network its handler exports: load or export the
    backend's artifact of its weights (`paths`, from resolve_weights) made with its options (`options`, from
    export_options, plus `network`) through the cache. Keyed by weights parameter, or "<parameter>.<network>"
    for a handler of several networks."""
    cache = ExportCache(values.get("cache_dir") or None)
    backend_options = backend.options(values)
    artifacts = {}
    for weights in manifest.weights:
        role, handler = weights.parameter, weights.load_module()
        for network in networks(handler):
            key = f"{role}.{network}" if network else role
            # The cache key names the model, and which of its weights and networks when it has several.
            name = ".".join(filter(None, (manifest.name, "" if role == "model" else role, network)))
            network_options = {**options[role], "network": network} if network else options[role]
            artifacts[key] = prepare_artifact(handler, name, backend, paths[role], network_options,
                                              backend_options, cache, logger, on_export)
    return artifacts


def load_model(manifest: Manifest, backend: Backend, values: Mapping[str, Any],
               logger: Any = logging.getLogger(__name__),
               on_export: Callable[[], None] | None = None,
               frame_hw: tuple[int, int] | None = None) -> LoadedModel:
    """Resolve the weights, export or load the backend's artifacts, open the sessions and build the model.

    `values` holds every parameter the node declared (common, backend and manifest ones); `on_export()`
    is called if an export into the cache starts. The model is prepared for frames of frame_hw (None: not
    known yet, DEFAULT_FRAME_HW).
    """
    frame_hw = tuple(frame_hw or DEFAULT_FRAME_HW)
    paths = resolve_weights(manifest, values)
    sizing = partial(export_options, manifest, dict(values), paths)
    options = sizing(frame_hw)
    backend_options = backend.options(values)
    int8 = backend_options.get("precision") == "int8"
    if int8:
        from vision_factory.quantization import int8_source, quantized_artifacts

    # int8 starts from the fp32 artifacts it is quantised from: the backend's own, or (tensorrt) ONNX files.
    artifacts = prepare_artifacts(manifest, int8_source(backend) if int8 else backend, values, paths, options, logger,
                                  on_export)

    def build(sessions: dict[str, Any]) -> Any:
        return manifest.load_module().build_model(
            sessions, {role: artifact.metadata for role, artifact in artifacts.items()}, options["model"], logger)

    if int8:
        artifacts = quantized_artifacts(backend, artifacts, values, build, logger, on_export)
    sessions = {role: backend.open(artifact, backend_options, logger) for role, artifact in artifacts.items()}
    loaded = LoadedModel(manifest, backend, artifacts, sessions, build(sessions), weights_given(manifest, values),
                         frame_hw, options, sizing)
    # Runtimes allocate and prepack on the first inference (0.3-0.5 s here): pay it now, off the frame path, on
    # every infer request (a session hands them out in turn; throughput mode has several).
    for _ in range(loaded.in_flight):
        loaded.model(np.zeros((*frame_hw, 3), np.uint8))
    return loaded


def load_default_model(model: str, backend: str, weights: Path | str, cache_dir: Path,
                       logger: Any = logging.getLogger(__name__), frame_hw: tuple[int, int] | None = None,
                       **overrides: Any) -> LoadedModel:
    """The model a freshly generated <model>_<backend> node builds for `weights`, frames of frame_hw and
    the parameter values in `overrides` (every other parameter at its default), exporting into `cache_dir`."""
    manifest = load_manifest(model)
    backend_row = manifest.backend(backend)
    values = {**{p.name: p.default for p in node_parameters(manifest, backend_row)}, **overrides,
              "model": str(weights), "cache_dir": str(cache_dir)}
    return load_model(manifest, backend_row, values, logger, frame_hw=frame_hw)
