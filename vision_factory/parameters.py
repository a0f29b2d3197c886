"""ROS parameter specs: one table of what every node declares, validated the same way everywhere.

Specs come from four places, merged into one list per node by node_parameters (the only place that
does): COMMON_PARAMETERS (every node), the backend's row in vision_factory.backends, the model's output
kind (vision_factory.output_kinds) and the model manifest.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable

import yaml

from vision_factory.errors import ConfigError

if TYPE_CHECKING:  # the manifest and backend modules import this one
    from vision_factory.backends import Backend
    from vision_factory.manifest import Manifest

TYPES: dict[str, type] = {"bool": bool, "integer": int, "double": float, "string": str}
# When a parameter takes effect. Only "start" parameters are read-only for ROS.
APPLIES: dict[str, str] = {
    "start": "Read at start.",
    "rebuild": "Live: a change rebuilds the model session in the background; frames keep flowing meanwhile.",
    "frame": "Live: applies to the next frame.",
    "report": "Set by the node to what is really running; changes from outside are refused.",
}


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter: its type, default, documentation and the values it accepts.

    `applies` says when a value takes effect (see APPLIES).
    """

    name: str
    type: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    applies: str = "frame"

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"parameter '{self.name}': type '{self.type}' is not one of {', '.join(TYPES)}")
        if self.applies not in APPLIES:
            raise ValueError(f"parameter '{self.name}': applies '{self.applies}' is not one of {', '.join(APPLIES)}")
        problem = self.validate(self.default)
        if problem:
            raise ValueError(f"parameter '{self.name}': default {self.default!r}: {problem}")

    def validate(self, value: Any) -> str:
        """'' when `value` is acceptable, else why not."""
        expected = TYPES[self.type]
        if self.type == "double" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            return f"expected a {self.type}, got {type(value).__name__}"
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            return f"{value} is outside [{self.range[0]}, {self.range[1]}]"
        # As ROS checks an integer range's step: a multiple from the start, or the end itself.
        if self.type == "integer" and self.step and self.range is not None \
                and (value - self.range[0]) % self.step and value != self.range[1]:
            return f"{value} is not {self.range[0]} plus a multiple of {self.step}"
        if self.choices and value not in self.choices:
            return f"'{value}' is not one of: {', '.join(self.choices)}"
        return ""

    def documentation(self) -> str:
        """The description with the accepted values and when a change applies."""
        text = self.description
        if self.range is not None:
            text += f" Range [{self.range[0]}, {self.range[1]}]."
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        return f"{text} {APPLIES[self.applies]}"


def active_weights(parameter: str) -> ParameterSpec:
    """The read-only parameter that reports which weights the serving session of `parameter` runs (a
    failed rebuild leaves `parameter` at the refused value and this at the one still serving)."""
    return ParameterSpec(f"active_{parameter}", "string", "", f"The {parameter} weights the running session "
                         f"was built from.", applies="report")


COMMON_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("model", "string", "", "Weights: a file path, or a model name the model's library can "
                  "download where there is internet. Exported once into cache_dir.", applies="rebuild"),
    active_weights("model"),
    ParameterSpec("cache_dir", "string", "", "Export cache folder; empty: $ROS_HOME/vision_factory, "
                  "else ~/.cache/vision_factory.", applies="start"),
    ParameterSpec("cameras", "integer", 0, "0: one camera, on image_raw, answered on ~/<topic>. N >= 1: N cameras "
                  "on cam0/image_raw ... cam<N-1>/image_raw (remap them), each answered on ~/cam<i>/<topic> with "
                  "its own header, one model serving them in turn.", range=(0, 16), applies="start"),
    ParameterSpec("input_compressed", "bool", False, "Subscribe to sensor_msgs/CompressedImage on "
                  "image_raw/compressed instead of sensor_msgs/Image on image_raw.", applies="start"),
    ParameterSpec("input_reliability", "string", "auto", "Input QoS reliability. auto follows the "
                  "publishers: reliable while they all are (large frames then arrive whole), else best effort, "
                  "subscribing again when they change; best_effort (the sensor-data profile) matches any "
                  "camera; reliable only matches reliable publishers.",
                  choices=("best_effort", "reliable", "auto"), applies="start"),
    ParameterSpec("input_depth", "integer", 1, "Input QoS history depth (keep last N). Frames beyond the one "
                  "being processed are dropped anyway: only the newest waits.", range=(1, 100), applies="start"),
    ParameterSpec("max_input_megapixels", "double", 40.0, "Larger frames are refused with an error (8K is 33 "
                  "megapixels).", range=(0.01, 1000.0)),
    ParameterSpec("publish_debug_image", "bool", False, "Also publish an annotated bgr8 image on "
                  "~/debug_image."),
    ParameterSpec("diagnostics_no_input_s", "double", 5.0, "Diagnostics turn WARN when no frame arrived for "
                  "this long while running.", range=(0.1, 86400.0)),
    ParameterSpec("diagnostics_latency_ms", "double", 1000.0, "Diagnostics turn WARN when the p99 latency "
                  "from receiving a frame to publishing its result exceeds this.", range=(1.0, 600000.0)),
)


# The common parameters a tracker node (no network, no images) declares too.
TRACKER_COMMON = ("input_reliability", "input_depth", "diagnostics_no_input_s")


def node_parameters(manifest: Manifest, backend: Backend | None = None,
                    weights: str | None = None) -> tuple[ParameterSpec, ...]:
    """Every parameter a <model>_<backend> node declares, in declaration order: the common ones (with
    `weights`, else the manifest's default weights, as the `model` default), the backend's (its precision
    defaulting to the manifest's for it, if any), the output kind's and the manifest's own. A tracker node
    (no backend): TRACKER_COMMON, its kind's and its own."""
    if backend is None:
        common = tuple(spec for spec in COMMON_PARAMETERS if spec.name in TRACKER_COMMON)
        return common + manifest.output_kind.parameters + manifest.parameters
    common = tuple(replace(spec, default=weights or manifest.default_weights) if spec.name == "model" else spec
                   for spec in COMMON_PARAMETERS)
    precision = manifest.precision_default(backend.name)
    own = tuple(replace(spec, default=precision) if spec.name == "precision" and precision else spec
                for spec in backend.parameters)
    return common + own + manifest.output_kind.parameters + manifest.parameters


def parameter_differences(generated: Iterable[ParameterSpec], expected: Iterable[ParameterSpec]) -> list[str]:
    """What differs between two parameter lists, by name: "+name" only in `expected`, "-name" only in
    `generated`, "~name" declared differently (type, default, range, choices, description, when it applies)."""
    old, new = {p.name: p for p in generated}, {p.name: p for p in expected}
    return ([f"+{name}" for name in new if name not in old] + [f"-{name}" for name in old if name not in new]
            + [f"~{name}" for name in new if name in old and new[name] != old[name]])


def parse_assignments(items: Iterable[str], known: Iterable[str]) -> dict[str, Any]:
    """Command-line `NAME=VALUE` items as {name: value}, values parsed as YAML (as `ros2 param set` does);
    a name not in `known` is refused, so a typo cannot leave a parameter at its default unnoticed."""
    known = list(known)
    values = {}
    for item in items:
        name, _, text = item.partition("=")
        if name not in known:
            raise ConfigError(f"unknown parameter '{name}' (known: {', '.join(known)})")
        values[name] = yaml.safe_load(text)
    return values
