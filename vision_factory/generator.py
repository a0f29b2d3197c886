"""Renders one ament_python package per model x backend from the model manifest and the templates.

All derived values (names, parameter lists, dependencies) are computed here; templates only substitute
and loop. The same inputs always give byte-identical files: nothing time- or machine-dependent is
rendered. Every name that ends up in code is validated first, so no manifest or argument can inject code.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from vision_factory import __version__
from vision_factory.backends import Backend
from vision_factory.errors import ConfigError
from vision_factory.manifest import Manifest, load_manifest
from vision_factory.parameters import ParameterSpec, node_parameters

# REP 144: lower-case letters, digits and single underscores, starting with a letter.
PACKAGE_NAME = re.compile(r"^[a-z](?:[a-z0-9]|_(?!_))*[a-z0-9]$")
# Message packages of this project: their sources ship in templates/<name>/ and the generator writes them
# into the workspace beside the node packages that need them (colcon does not look inside vision_factory).
INTERFACE_PACKAGES = ("vision_factory_msgs",)
# Every node needs vision_msgs too: the runtime library imports it.
BASE_DEPENDENCIES = ("rclpy", "std_msgs", "sensor_msgs", "vision_msgs", "launch", "launch_ros", "vision_factory")
# template -> path inside the package; {package} and {node} are substituted.
FILES = {
    "package.xml.j2": "package.xml",
    "setup.py.j2": "setup.py",
    "setup.cfg.j2": "setup.cfg",
    "resource.j2": "resource/{package}",
    "init.py.j2": "{package}/__init__.py",
    "node.py.j2": "{package}/{node}.py",
    "launch.py.j2": "launch/{node}.launch.py",
    "params.yaml.j2": "config/params.yaml",
    "README.md.j2": "README.md",
}


@dataclass(frozen=True)
class PackagePlan:
    """Everything a package's templates need, derived and validated."""

    manifest: Manifest
    backend: Backend | None  # None for a tracker: it runs no network
    package: str
    node: str
    class_name: str
    weights: str
    parameters: tuple[ParameterSpec, ...]
    dependencies: tuple[str, ...]
    topics: tuple[tuple[str, str, str], ...]

    def defaults(self) -> dict[str, Any]:
        """Every parameter's value in a freshly generated node (what its params.yaml holds)."""
        return {p.name: p.default for p in self.parameters}


def plan_package(model: str, backend: str | None, weights: str | None = None,
                 package: str | None = None) -> PackagePlan:
    """Validate a model x backend pair (a tracker: the model alone) and derive its package. ConfigError
    says what is wrong."""
    manifest = load_manifest(model)
    if not manifest.backends:
        if backend:
            raise ConfigError(f"model '{model}' runs no network, so it has no backends: generate it without one")
        backend_row, node = None, manifest.name
    else:
        if not backend:
            raise ConfigError(f"model '{model}' needs a backend (supported: {', '.join(manifest.backends)})")
        backend_row = manifest.backend(backend)
        if backend not in manifest.backends:
            raise ConfigError(f"model '{model}' does not support backend '{backend}' "
                              f"(supported: {', '.join(manifest.backends)})")
        node = f"{manifest.name}_{backend_row.name}"
    package = package or node
    if not PACKAGE_NAME.match(package):
        raise ConfigError(f"'{package}' is not a valid ROS package name (REP 144: lower-case letters, digits "
                          f"and single underscores, starting with a letter)")
    if weights:
        path = Path(weights).expanduser()
        weights = str(path.resolve()) if path.exists() else weights
    weights = weights or manifest.default_weights
    if any(c in weights for c in "\n\r\0"):
        raise ConfigError("the weights path contains a line break or NUL")
    class_name = "".join(part.capitalize() for part in node.split("_")) + "Node"
    kind = manifest.output_kind
    dependencies = tuple(dict.fromkeys(BASE_DEPENDENCIES + kind.message_packages))
    topics = tuple((f"~/{t.name}", t.message.replace("/msg/", "/"), t.doc) for t in kind.topics)
    return PackagePlan(manifest, backend_row, package, node, class_name, weights,
                       node_parameters(manifest, backend_row, weights), dependencies, topics)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FunctionLoader(_load_template), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)
    env.filters["py"] = repr  # a Python literal: strings are quoted and escaped
    env.filters["yaml"] = lambda value: json.dumps(value)  # JSON scalars are valid YAML scalars
    env.filters["xml"] = lambda text: (str(text).replace("&", "&amp;").replace("<", "&lt;")
                                       .replace(">", "&gt;"))
    return env


def _load_template(name: str) -> str:
    return (resources.files("vision_factory.templates") / name).read_text()


def render_package(plan: PackagePlan) -> dict[str, str]:
    """Relative path -> file content for the whole package."""
    env = _environment()
    context: dict[str, Any] = {"plan": plan, "version": __version__,
                               "source": plan.manifest.source}
    return {path.format(package=plan.package, node=plan.node): env.get_template(template).render(context)
            for template, path in FILES.items()}


def write_package(plan: PackagePlan, out_dir: Path) -> list[Path]:
    """Write the package into out_dir/<package> (replacing generated files), and beside it the project's
    message packages it depends on; return the folders written, the node package's first."""
    root = Path(out_dir) / plan.package
    for relative, content in render_package(plan).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    written = [root]
    for name in INTERFACE_PACKAGES:
        if name in plan.dependencies:
            written.append(write_interface_package(name, Path(out_dir)))
    return written


def write_interface_package(name: str, out_dir: Path) -> Path:
    """Copy the message package `name` from templates/ into out_dir/<name> (replacing it)."""
    target = Path(out_dir) / name
    shutil.rmtree(target, ignore_errors=True)
    with resources.as_file(resources.files("vision_factory.templates") / name) as source:
        shutil.copytree(source, target)
    return target


def supported_pairs() -> dict[str, tuple[str, ...]]:
    """model -> the backends its manifest supports."""
    from vision_factory.manifest import available_models

    return {name: load_manifest(name).backends for name in available_models()}


