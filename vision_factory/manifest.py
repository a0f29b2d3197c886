"""Model manifests: one YAML file per model family, parsed strictly.

A manifest says which node runs it (`node`: an inference node, the default, or a tracker, which runs no
network and so has no module, weights or backends), which Python module implements the model, what its
nodes need from pip besides the backend's runtime (`requirements`, a file of requirements/), what it
publishes (an output kind of vision_factory.output_kinds), which backends it lacks (it runs on all of them
by default), which runtime its cuda / rocm backends use, which weights it loads besides `model` (each one
a parameter, e.g. a pose model's person detector), which parameters it adds, and per backend the default of
its `precision` parameter where the model was measured accurate at another (`precision`, e.g. {openvino: auto};
the accuracy report, `vision-factory accuracy`, measures it). Unknown keys, wrong types
and unknown backends or outputs are rejected with an error naming the manifest and the field. Manifests
ship in vision_factory/manifests/; more can live outside the package ($VISION_FACTORY_MANIFESTS).
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vision_factory.backends import BACKENDS, GPU_RUNTIMES, Backend, all_backend_parameters, get_backend
from vision_factory.errors import ConfigError
from vision_factory.output_kinds import OUTPUT_KINDS, OutputKind
from vision_factory.parameters import COMMON_PARAMETERS, ParameterSpec, active_weights

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_KEYS = {"name": str, "summary": str, "output": str, "parameters": dict}
_OPTIONAL_KEYS = {"node": (str, "inference"), "module": (str, ""), "default_weights": (str, ""),
                  "gpu_runtime": (str, "pytorch"), "weights": (dict, {}), "unsupported_backends": (list, []),
                  "weights_module": (str, ""), "requirements": (str, ""), "precision": (dict, {})}
NODES = ("inference", "tracker")  # what a manifest's `node` may be
# What an inference manifest must have, and what a tracker's (no network) must not.
_NETWORK_KEYS = ("module", "default_weights")
_NETWORK_ONLY_KEYS = ("module", "default_weights", "gpu_runtime", "weights", "unsupported_backends", "weights_module",
                      "requirements", "precision")
# Text rendered into comments, docstrings and XML: one line, no markup or quote runs.
_UNSAFE_TEXT = re.compile(r'[\n\r\0<>&]|"""|\'\'\'')
_PARAMETER_KEYS = {"type", "default", "description", "range", "step", "choices", "applies"}
_WEIGHTS_KEYS = {"default", "description", "module"}
MODULE_PATH = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?$")  # module, or module:object
REQUIREMENTS_FILE = re.compile(r"^[a-z][a-z0-9_-]*\.txt$")  # a file of vision_factory's requirements/


def import_contract(path: str) -> Any:
    """The module `a.b`, or the object `name` in it for `a.b:name` (see vision_factory.models)."""
    module, _, name = path.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, name) if name else loaded


@dataclass(frozen=True)
class Weights:
    """One set of weights a model loads: the string parameter that names it, its default and the module
    that resolves and exports it (the contract in vision_factory.models)."""

    parameter: str
    default: str
    module: str

    def load_module(self) -> Any:
        return import_contract(self.module)


@dataclass(frozen=True)
class Manifest:
    """A parsed model manifest."""

    name: str
    summary: str
    module: str  # "" for a tracker
    output: str
    backends: tuple[str, ...]  # () for a tracker: it runs no network
    default_weights: str
    parameters: tuple[ParameterSpec, ...]
    source: str
    gpu_runtime: str = "pytorch"
    extra_weights: tuple[Weights, ...] = ()
    weights_module: str = ""  # the `model` weights' handling, when not in the model module itself
    node: str = "inference"  # or "tracker" (NODES)
    requirements: str = ""  # what its nodes need from pip besides the backend's runtime (a requirements/ file)
    precision: tuple[tuple[str, str], ...] = ()  # (backend, default of its precision parameter) where not its own

    def precision_default(self, backend: str) -> str | None:
        """The default of backend `backend`'s precision parameter for this model, where the manifest sets one."""
        return dict(self.precision).get(backend)

    def load_module(self) -> Any:
        """The model module (a vision_factory.models.ModelFamily)."""
        return import_contract(self.module)

    @property
    def weights(self) -> tuple[Weights, ...]:
        """Every set of weights the model loads, the `model` parameter's first."""
        return (Weights("model", self.default_weights, self.weights_module or self.module),) + self.extra_weights

    @property
    def output_kind(self) -> OutputKind:
        """What the model's nodes publish (vision_factory.output_kinds)."""
        return OUTPUT_KINDS[self.output]

    def backend(self, name: str) -> Backend:
        """The backend row this model runs as `name` (cuda / rocm depend on gpu_runtime)."""
        return get_backend(name, self.gpu_runtime)


def parse_manifest(text: str, source: str) -> Manifest:
    """Parse one manifest's YAML text; `source` names it in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a manifest is a mapping of {', '.join(_KEYS)}")
    allowed = ", ".join([*_KEYS, *_OPTIONAL_KEYS])

    def fail(field: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: field '{field}': {problem}")

    unknown = sorted(set(data) - set(_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown key (allowed: {allowed})")
    for key in _KEYS:
        if key not in data:
            raise fail(key, "missing")
    node = data.get("node", "inference")
    if node not in NODES:
        raise fail("node", f"'{node}' is not one of: {', '.join(NODES)}")
    for key in _NETWORK_KEYS if node == "inference" else ():
        if key not in data:
            raise fail(key, "missing")
    for key in _NETWORK_ONLY_KEYS if node != "inference" else ():
        if key in data:
            raise fail(key, f"a {node} runs no network: it has no {key}")
    for key, (_, default) in _OPTIONAL_KEYS.items():
        data.setdefault(key, default)
    types = {**_KEYS, **{key: kind for key, (kind, _) in _OPTIONAL_KEYS.items()}}
    for key, expected in types.items():
        if not isinstance(data[key], expected):
            raise fail(key, f"expected a {expected.__name__}, got {type(data[key]).__name__}")
    for text_field in ("summary", "default_weights"):
        if _UNSAFE_TEXT.search(data[text_field]):
            raise fail(text_field, "must be one line of plain text")
    if not IDENTIFIER.match(data["name"]):
        raise fail("name", f"'{data['name']}' is not a lower-case identifier")
    for key in ("module", "weights_module"):
        if (data[key] or (key == "module" and node == "inference")) and not MODULE_PATH.match(data[key]):
            raise fail(key, f"'{data[key]}' is not a Python module path")
    kinds = [name for name, kind in OUTPUT_KINDS.items() if kind.node == node]
    if data["output"] not in kinds:
        raise fail("output", f"'{data['output']}' is not one of: {', '.join(kinds)} (what a {node} node publishes)")
    for backend in data["unsupported_backends"]:
        if backend not in BACKENDS:
            raise fail("unsupported_backends", f"unknown backend '{backend}' (known: {', '.join(BACKENDS)})")
    if data["requirements"] and not REQUIREMENTS_FILE.match(data["requirements"]):
        raise fail("requirements", f"'{data['requirements']}' is not a requirements file name such as pose.txt")
    if data["gpu_runtime"] not in GPU_RUNTIMES:
        raise fail("gpu_runtime", f"'{data['gpu_runtime']}' is not one of: {', '.join(GPU_RUNTIMES)}")
    for backend, precision in data["precision"].items():
        spec = next((p for p in get_backend(backend, data["gpu_runtime"]).parameters if p.name == "precision"), None) \
            if backend in BACKENDS else None
        if spec is None:
            raise fail(f"precision.{backend}", "not a backend with a precision parameter")
        if precision not in spec.choices:
            raise fail(f"precision.{backend}", f"'{precision}' is not one of: {', '.join(spec.choices)}")
    taken = {p.name for p in COMMON_PARAMETERS} | all_backend_parameters() | {
        p.name for kind in OUTPUT_KINDS.values() for p in kind.parameters}
    parameters, extra_weights = [], []
    for name, spec in data["weights"].items():
        field = f"weights.{name}"
        if not isinstance(name, str) or not IDENTIFIER.match(name) or {name, f"active_{name}"} & taken:
            raise fail(field, "a weights parameter is a lower-case identifier no node or backend declares")
        if not isinstance(spec, dict) or set(spec) != _WEIGHTS_KEYS:
            raise fail(field, f"expected a mapping of exactly {', '.join(sorted(_WEIGHTS_KEYS))}")
        if not all(isinstance(spec[key], str) for key in _WEIGHTS_KEYS):
            raise fail(field, "default, description and module are strings")
        if _UNSAFE_TEXT.search(spec["default"]) or not spec["description"] or _UNSAFE_TEXT.search(spec["description"]):
            raise fail(field, "default and description must be one line of plain text")
        if not MODULE_PATH.match(spec["module"]):
            raise fail(f"{field}.module", f"'{spec['module']}' is not a Python module path")
        extra_weights.append(Weights(name, spec["default"], spec["module"]))
        # A weights file is a parameter like any other: live, and a change rebuilds the sessions.
        parameters += [ParameterSpec(name, "string", spec["default"], spec["description"], applies="rebuild"),
                       active_weights(name)]
        taken |= {name, active_weights(name).name}
    for name, spec in data["parameters"].items():
        field = f"parameters.{name}"
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise fail(field, "a parameter name is a lower-case identifier")
        if name in taken:
            raise fail(field, "already declared by every node, by a backend, by an output kind or as weights")
        if not isinstance(spec, dict):
            raise fail(field, "expected a mapping")
        extra = sorted(set(spec) - _PARAMETER_KEYS)
        if extra:
            raise fail(f"{field}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(_PARAMETER_KEYS))})")
        try:
            parameters.append(ParameterSpec(
                name=name, type=spec.get("type", ""), default=spec.get("default"),
                description=str(spec.get("description", "")),
                range=tuple(spec["range"]) if "range" in spec else None, step=spec.get("step"),
                choices=tuple(spec.get("choices", ())), applies=str(spec.get("applies", "frame"))))
        except (ValueError, TypeError) as e:
            raise fail(field, str(e)) from e
        if not parameters[-1].description or _UNSAFE_TEXT.search(parameters[-1].description):
            raise fail(f"{field}.description", "must be one line of plain text")
    return Manifest(name=data["name"], summary=data["summary"], module=data["module"], output=data["output"],
                    backends=tuple(b for b in BACKENDS if b not in data["unsupported_backends"]) if node == "inference"
                    else (),
                    default_weights=data["default_weights"],
                    parameters=tuple(parameters), source=source, gpu_runtime=data["gpu_runtime"],
                    extra_weights=tuple(extra_weights), weights_module=data["weights_module"], node=node,
                    requirements=data["requirements"], precision=tuple(data["precision"].items()))


# Folders (os.pathsep-separated) of manifests that do not ship with vision_factory: a model family added
# without touching the package. Set it where the generator runs and where the generated nodes run.
MANIFEST_PATH_VARIABLE = "VISION_FACTORY_MANIFESTS"


def _manifest_files() -> dict[str, tuple[str, Any]]:
    """model name -> (where its manifest is, for messages and generated headers; the file)."""
    folder = resources.files("vision_factory") / "manifests"
    files = {Path(f.name).stem: (f"vision_factory/manifests/{f.name}", f)
             for f in folder.iterdir() if f.name.endswith(".yaml")}
    for extra in filter(None, os.environ.get(MANIFEST_PATH_VARIABLE, "").split(os.pathsep)):
        for path in sorted(Path(extra).glob("*.yaml")):
            if path.stem in files:
                raise ConfigError(f"{path}: model '{path.stem}' is already defined by {files[path.stem][0]}")
            files[path.stem] = (str(path), path)
    return files


def available_models() -> list[str]:
    """Names of the models that ship with vision_factory, and of those in $VISION_FACTORY_MANIFESTS."""
    return sorted(_manifest_files())


def load_manifest(name: str) -> Manifest:
    """The manifest of model `name`; ConfigError listing the known models otherwise."""
    files = _manifest_files()
    if name not in files:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(sorted(files))})")
    source, file = files[name]
    manifest = parse_manifest(file.read_text(), source)
    if manifest.name != name:
        raise ConfigError(f"{source}: field 'name': '{manifest.name}' differs from the file name")
    return manifest
