"""ONNX Runtime sessions, with the execution provider chosen by an ordered list ("cuda,cpu")."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vision_factory.backends.session import BackendError
from vision_factory.cpus import physical_cores

# Short names users type -> ONNX Runtime provider names. Full provider names are accepted too.
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}
# Providers that take the `device` parameter as their GPU index.
_DEVICE_ID_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
                        "MIGraphXExecutionProvider"}


def parse_providers(text: str) -> list[str]:
    """Turn "cuda, cpu" into ORT provider names, in order. Unknown names raise ValueError."""
    known = set(PROVIDER_ALIASES.values())
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("execution_provider is empty; give an ordered list such as 'cuda,cpu'")
    providers = []
    for name in names:
        provider = PROVIDER_ALIASES.get(name.lower(), name)
        if provider not in known:
            raise ValueError(f"unknown execution provider '{name}' (known: {', '.join(PROVIDER_ALIASES)} "
                             f"or their ONNX Runtime names)")
        providers.append(provider)
    return providers


def option_problem(name: str, value: Any) -> str:
    """'' if a setting can work, else why not: unknown provider names, a device that is no GPU index."""
    if name == "execution_provider":
        try:
            parse_providers(str(value))
        except ValueError as e:
            import onnxruntime as ort

            return f"{e}; available here: {', '.join(ort.get_available_providers())}"
    if name == "device" and not str(value).isdigit():
        return f"'{value}' is not a GPU index such as 0"
    return ""


class OnnxRuntimeSession:
    """An onnxruntime.InferenceSession on the first available providers of the requested list."""

    def __init__(self, model_path: Path, options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)):
        import onnxruntime as ort

        requested = parse_providers(str(options.get("execution_provider", "cpu")))
        available = ort.get_available_providers()
        chosen = [p for p in requested if p in available]
        skipped = [p for p in requested if p not in available]
        if skipped:
            logger.warning(f"execution providers not available here, skipped: {', '.join(skipped)} "
                           f"(available: {', '.join(available)})")
        if not chosen:
            raise BackendError(f"none of the requested execution providers is available "
                               f"({', '.join(requested)}); available: {', '.join(available)}")
        device = str(options.get("device", "0"))
        provider_options = [{"device_id": device} if p in _DEVICE_ID_PROVIDERS else {} for p in chosen]
        settings = ort.SessionOptions()
        # Never 0: with 0 ONNX Runtime pins its intra-op threads to cores, and the calling thread (not pinned) then
        # shares a core with one of them in some launches: on a 2-core machine 1 launch in 8 ran YOLOv8n at 56 ms,
        # 7 at 68-70; with the count given, 52-54 ms in 8 of 8 (README, Precision: threads).
        settings.intra_op_num_threads = int(options.get("inference_threads", 0)) or physical_cores()
        settings.add_session_config_entry("session.intra_op.allow_spinning",
                                          "1" if options.get("allow_spinning", False) else "0")
        self._session = ort.InferenceSession(str(model_path), settings, providers=chosen,
                                             provider_options=provider_options)
        first = self._session.get_inputs()[0]
        self.input_name = first.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in first.shape)
        self.active = ",".join(self._session.get_providers())
        logger.info(f"onnxruntime {ort.__version__} running {model_path.name} on {self.active}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, dict(inputs))


def runtime_fields(options: Mapping[str, Any]) -> dict[str, str]:
    """Versions an artifact for this backend depends on (part of its cache key)."""
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__}


def open_session(artifact: Any, options: Mapping[str, Any], logger: Any) -> OnnxRuntimeSession:
    """The backend row's opener: a session on the artifact's file (artifacts.Artifact)."""
    return OnnxRuntimeSession(artifact.path, options, logger)
