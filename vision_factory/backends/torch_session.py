"""PyTorch sessions for the cuda and rocm backends (ROCm builds of PyTorch use the same "cuda:N" names).

The model module loads its checkpoint into an nn.Module whose forward returns the same raw outputs as
its ONNX export, so every backend shares one postprocess.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vision_factory.backends.session import BackendError


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def option_problem(name: str, value: Any) -> str:
    """'' if a setting can work, else why not."""
    if name == "device" and not _DEVICE.match(str(value)):
        return f"'{value}' is not a PyTorch device such as cuda:0, cuda:1 or cpu"
    return ""


def resolve_device(requested: str, expect_rocm: bool, logger: Any) -> str:
    """The torch device to use: `requested` if usable, else "cpu" with one warning saying why."""
    import torch

    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError) as e:
        raise BackendError(f"malformed device '{requested}' (use cuda:N or cpu)") from e
    if device.type == "cpu":
        return "cpu"
    if device.type != "cuda":
        raise BackendError(f"device '{requested}' is not supported here (use cuda:N or cpu)")
    build = "ROCm" if torch.version.hip else "CUDA" if torch.version.cuda else "CPU-only"
    if expect_rocm and build != "ROCm":
        logger.warning(f"the rocm backend runs on a {build} build of PyTorch {torch.__version__}")
    if not torch.cuda.is_available():
        logger.warning(f"no GPU visible to PyTorch {torch.__version__} ({build} build): falling back "
                       f"from {requested} to cpu")
        return "cpu"
    index = device.index or 0
    if index >= torch.cuda.device_count():
        logger.warning(f"{requested} does not exist ({torch.cuda.device_count()} GPUs): using cuda:0")
        index = 0
    return f"cuda:{index}"


_STARTING_THREADS: dict[str, int] = {}


class TorchSession:
    """A loaded nn.Module (from the model module's load_torch) on a device, fed numpy arrays."""

    def __init__(self, weights: Path, module: Any, options: Mapping[str, Any], expect_rocm: bool = False,
                 logger: Any = logging.getLogger(__name__)):
        import torch

        self._torch = torch
        # PyTorch's threads are one setting for the whole process; 0 puts back what it started with.
        _STARTING_THREADS.setdefault("threads", torch.get_num_threads())
        torch.set_num_threads(int(options.get("inference_threads", 0)) or _STARTING_THREADS["threads"])
        self._device = torch.device(resolve_device(str(options.get("device", "cuda:0")), expect_rocm, logger))
        precision = options.get("precision", "fp32")
        # auto: fp16 where it is fast (a GPU), fp32 on the CPU fallback, without a warning.
        half = precision == "fp16" or (precision == "auto" and self._device.type != "cpu")
        if half and self._device.type == "cpu":
            logger.warning("fp16 needs a GPU; running in fp32 on cpu")
            half = False
        self._dtype = torch.float16 if half else torch.float32
        self._module = module.to(self._device, self._dtype).eval()
        self.input_name = "images"
        self.input_shape = (-1, -1, -1, -1)  # PyTorch modules take any size: the model picks it
        self.active = f"{self._device} ({'fp16' if half else 'fp32'})"
        logger.info(f"torch {torch.__version__} running {weights.name} on {self.active}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            # Images take the session's precision; integer inputs (token ids, masks) stay integers.
            tensors = [torch.from_numpy(array).to(self._device, self._dtype if array.dtype.kind == "f" else None)
                       for array in inputs.values()]
            outputs = self._module(*tensors)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [output.float().cpu().numpy() for output in outputs]


def runtime_fields(options: Mapping[str, Any]) -> dict[str, str]:
    """Versions a torch-backend artifact depends on (part of its cache key)."""
    import torch

    return {"torch": torch.__version__}


def open_session(artifact: Any, options: Mapping[str, Any], logger: Any, expect_rocm: bool = False) -> TorchSession:
    """The backend row's opener: the artifact's loaded nn.Module on the device (`expect_rocm`: the rocm row,
    whose PyTorch must be a ROCm build)."""
    return TorchSession(artifact.path, artifact.module, options, expect_rocm, logger)
