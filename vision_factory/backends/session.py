"""The one interface every backend session implements: named input arrays in, output arrays out."""
from __future__ import annotations

from typing import Mapping, Protocol

import numpy as np


class Session(Protocol):
    """A loaded model on one runtime.

    input_name / input_shape: the model's (first) input; dynamic dimensions are -1.
    active: what is really running, for logs and diagnostics (e.g. "CPUExecutionProvider").
    A session whose run() may be called from several threads at once, each call on its own infer request,
    says how many in an `in_flight` attribute; without it, calls are taken to run one at a time.
    """

    input_name: str
    input_shape: tuple[int, ...]
    active: str

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model; outputs in the model's declared order, as numpy arrays."""
        ...


class ReportingSession(Protocol):
    """A session with figures of its own for diagnostics (e.g. a server's round trips and failures)."""

    def report(self) -> tuple[str, dict[str, str]]:
        """(a warning for diagnostics, '' when all is well; named values to show)."""
        ...


# ONNX metadata key: {axis name (an input's dim_param): [min, opt, max]} for the dynamic axes of a network's
# inputs (e.g. a prompt's length), for runtimes that build for a range of shapes (TensorRT's optimization
# profiles). Written by a model's export.
DYNAMIC_AXIS_RANGES = "dynamic_axis_ranges"
# ONNX metadata key: {property: value} an OpenVINO compile of the network needs besides the precision hint
# (a workaround a model module has measured to be necessary). Written by a model's export.
OPENVINO_PROPERTIES = "openvino_properties"


class BackendError(RuntimeError):
    """A backend cannot be opened with the requested settings; the text says what is available."""
