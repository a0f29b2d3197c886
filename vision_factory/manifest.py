"""Model manifests: one YAML file per model family, parsed strictly.

A manifest says which Python module implements the model, what it publishes, which backends it
supports and which parameters it adds. Unknown keys, wrong types and unknown backends or outputs are
rejected with an error naming the manifest and the field.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from vision_factory.backends import BACKENDS
from vision_factory.errors import ConfigError
from vision_factory.parameters import COMMON_PARAMETERS, ParameterSpec

# Output kinds a model can declare; each maps to a publisher in vision_factory.outputs.
OUTPUTS = ("detections",)
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_KEYS = {"name": str, "summary": str, "module": str, "output": str, "backends": list,
         "default_weights": str, "parameters": dict}
# Text rendered into comments, docstrings and XML: one line, no markup or quote runs.
_UNSAFE_TEXT = re.compile(r'[\n\r\0<>&]|"""|\'\'\'')
_PARAMETER_KEYS = {"type", "default", "description", "range", "step", "choices", "applies"}


@dataclass(frozen=True)
class Manifest:
    """A parsed model manifest."""

    name: str
    summary: str
    module: str
    output: str
    backends: tuple[str, ...]
    default_weights: str
    parameters: tuple[ParameterSpec, ...]
    source: str

    def load_module(self) -> ModuleType:
        """The model module (pure preprocess / postprocess, exporters)."""
        return importlib.import_module(self.module)


def parse_manifest(text: str, source: str) -> Manifest:
    """Parse one manifest's YAML text; `source` names it in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a manifest is a mapping of {', '.join(_KEYS)}")

    def fail(field: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: field '{field}': {problem}")

    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown key (allowed: {', '.join(_KEYS)})")
    for key, expected in _KEYS.items():
        if key not in data:
            raise fail(key, "missing")
        if not isinstance(data[key], expected):
            raise fail(key, f"expected a {expected.__name__}, got {type(data[key]).__name__}")
    for text_field in ("summary", "default_weights"):
        if _UNSAFE_TEXT.search(data[text_field]):
            raise fail(text_field, "must be one line of plain text")
    if not IDENTIFIER.match(data["name"]):
        raise fail("name", f"'{data['name']}' is not a lower-case identifier")
    if not re.match(r"^[A-Za-z_][\w.]*$", data["module"]):
        raise fail("module", f"'{data['module']}' is not a Python module path")
    if data["output"] not in OUTPUTS:
        raise fail("output", f"'{data['output']}' is not one of: {', '.join(OUTPUTS)}")
    for backend in data["backends"]:
        if backend not in BACKENDS:
            raise fail("backends", f"unknown backend '{backend}' (known: {', '.join(BACKENDS)})")
    taken = {p.name for p in COMMON_PARAMETERS} | {p.name for b in BACKENDS.values() for p in b.parameters}
    parameters = []
    for name, spec in data["parameters"].items():
        field = f"parameters.{name}"
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise fail(field, "a parameter name is a lower-case identifier")
        if name in taken:
            raise fail(field, "already declared by every node or by a backend")
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
                    backends=tuple(data["backends"]), default_weights=data["default_weights"],
                    parameters=tuple(parameters), source=source)


def _manifest_files() -> dict[str, Any]:
    folder = resources.files("vision_factory") / "manifests"
    return {Path(f.name).stem: f for f in folder.iterdir() if f.name.endswith(".yaml")}


def available_models() -> list[str]:
    """Names of the models that ship with vision_factory."""
    return sorted(_manifest_files())


def load_manifest(name: str) -> Manifest:
    """The shipped manifest of model `name`; ConfigError listing the known models otherwise."""
    files = _manifest_files()
    if name not in files:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(sorted(files))})")
    manifest = parse_manifest(files[name].read_text(), f"manifests/{name}.yaml")
    if manifest.name != name:
        raise ConfigError(f"manifests/{name}.yaml: field 'name': '{manifest.name}' differs from the file name")
    return manifest
