"""OpenVINO Runtime sessions compiling an OpenVINO IR for a device (CPU, GPU, NPU, AUTO, ...)."""
from __future__ import annotations

import json
import logging
import queue
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vision_factory.backends.session import OPENVINO_PROPERTIES, BackendError

# Device names that pick or combine devices themselves; the rest must be listed by the runtime.
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
# precision parameter -> INFERENCE_PRECISION_HINT. fp32 is set explicitly: on CPUs with bf16 units OpenVINO
# otherwise runs bf16 and scores drift by up to 0.08 from the fp32 reference (measured on bus/bag frames).
# auto sets none: the device's own choice (bf16 on CPUs with bf16 units, f16 on GPUs, else f32). int8 (an NNCF
# quantised IR): the ops left in float run f32, faster than bf16 beside int8 here (20.5 vs 24.0 ms, YOLOv8n).
PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}
# INFERENCE_PRECISION_HINT a compiled model reports (ov.Type names) -> the precision parameter's name for it.
_PRECISION_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}
# CPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU, HETERO:GPU.0,CPU ...
_DEVICE_NAME = re.compile(r"^[A-Z]+(\.\d+)?(:[A-Z]+(\.\d+)?(,[A-Z]+(\.\d+)?)*)?$")


def option_problem(name: str, value: Any) -> str:
    """'' if a setting can work, else why not."""
    if name == "device" and not _DEVICE_NAME.match(str(value).upper()):
        import openvino as ov

        return (f"'{value}' is not an OpenVINO device name (available here: "
                f"{', '.join(ov.Core().available_devices)}, or AUTO)")
    return ""


class OpenVinoSession:
    """An ov.CompiledModel on `device` at the requested inference precision, with the network's own
    compile properties (`properties`, from its export's OPENVINO_PROPERTIES metadata)."""

    def __init__(self, model_path: Path, options: Mapping[str, Any], logger: Any = logging.getLogger(__name__),
                 properties: Mapping[str, str] | None = None):
        import openvino as ov

        core = ov.Core()
        device = str(options.get("device", "CPU")).upper()
        available = core.available_devices
        if not device.startswith(_VIRTUAL_DEVICES) and device not in available:
            raise BackendError(f"OpenVINO device '{device}' is not available (available: "
                               f"{', '.join(available)}, or AUTO)")
        model = core.read_model(str(model_path))
        precision = str(options.get("precision", "fp32"))
        hint = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]} if precision in PRECISION_HINTS else {}
        threads = int(options.get("inference_threads", 0))
        if threads and device == "CPU":  # a CPU setting: other devices refuse it
            hint["INFERENCE_NUM_THREADS"] = threads
        mode = str(options.get("performance_mode", "latency"))
        hint["PERFORMANCE_HINT"] = mode.upper()
        self._compiled = core.compile_model(model, device, {**(properties or {}), **hint})
        chosen = _chosen_precision(self._compiled)
        if precision == "int8":
            precision = f"int8 + {chosen}"
        elif chosen not in ("?", precision):  # auto, or a hint the device lacks (fp16 on most CPUs runs bf16)
            precision = f"{precision}: {chosen}"
        # Latency: one request, every core on each frame. Throughput: the device's optimal number of requests
        # (as many as its streams), each run() on an idle one; the node runs that many frames at once.
        self.in_flight = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) \
            if mode == "throughput" else 1
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(self.in_flight):
            self._idle.put(self._compiled.create_infer_request())
        first = model.inputs[0]
        self.input_name = first.get_any_name()
        self.input_shape = tuple(d.get_length() if d.is_static else -1 for d in first.get_partial_shape())
        self.active = f"{device} ({precision})"
        if device.startswith(_VIRTUAL_DEVICES):
            chosen = self._compiled.get_property("EXECUTION_DEVICES")
            self.active = f"{device} ({', '.join(chosen)}, {precision})"
        if mode == "throughput":
            self.active += f", throughput: {self.in_flight} requests"
        logger.info(f"openvino {ov.__version__} running {model_path.name} on {self.active}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One inference on an idle infer request (waiting for one when all are busy); thread-safe. The
        outputs are copies (infer's default), so they outlive the request's next call."""
        request = self._idle.get()
        try:
            results = request.infer(dict(inputs))
            return [np.asarray(results[output]) for output in self._compiled.outputs]
        finally:
            self._idle.put(request)


def _chosen_precision(compiled: Any) -> str:
    """The inference precision a compiled model really runs ("?" when the device does not say, e.g. some
    virtual devices)."""
    try:
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    except (RuntimeError, AttributeError):
        return "?"
    return _PRECISION_NAMES.get(chosen, chosen)


def convert_onnx(onnx_path: Path, xml_path: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
    """Convert an ONNX file to OpenVINO IR (`xml_path` and its .bin), weights kept in fp32."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return {"converter": f"openvino {ov.__version__}"}


def runtime_fields(options: Mapping[str, Any]) -> dict[str, str]:
    """Versions an artifact for this backend depends on (part of its cache key)."""
    import openvino as ov

    return {"openvino": ov.__version__}


def open_session(artifact: Any, options: Mapping[str, Any], logger: Any) -> OpenVinoSession:
    """The backend row's opener: a session on the artifact's file (artifacts.Artifact)."""
    properties = json.loads(artifact.metadata.get(OPENVINO_PROPERTIES, "{}"))
    return OpenVinoSession(artifact.path, options, logger, properties)
