"""The registry of backends: the one place that knows each backend's runtime, artifact and parameters.

Everything else looks a backend up here by name; cuda and rocm are two rows of one implementation.
What the cuda and rocm backends run depends on the model: PyTorch on the model's checkpoint (BACKENDS),
or, for models whose weights are ONNX files (a manifest's `gpu_runtime: onnxruntime`), ONNX Runtime's
CUDA / ROCm execution providers (ONNXRUNTIME_GPU_BACKENDS).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping

from vision_factory.errors import ConfigError
from vision_factory.parameters import ParameterSpec

_DEVICE_INDEX = "GPU index used by GPU execution providers (CUDA, TensorRT, ROCm, MIGraphX)."
_ACTIVE_DEVICE = ParameterSpec("active_device", "string", "", "The device and precision really running.",
                               applies="report")


def _onnxruntime_parameters(providers: str) -> tuple[ParameterSpec, ...]:
    """What every ONNX Runtime backend row declares; `providers` is its default provider list."""
    return (
        ParameterSpec("execution_provider", "string", providers, "Ordered execution providers, e.g. 'cuda,cpu' or "
                      "ONNX Runtime names; unavailable ones are skipped with a warning.", applies="rebuild"),
        ParameterSpec("device", "string", "0", _DEVICE_INDEX, applies="rebuild"),
        ParameterSpec("active_execution_provider", "string", "", "The execution providers ONNX Runtime "
                      "really runs, in order.", applies="report"),
    )


_TORCH_DEVICE = ("PyTorch device: cuda:N (ROCm builds use the same names) or cpu. Falls back to cpu with "
                 "one warning when no GPU is visible.")


@dataclass(frozen=True)
class Backend:
    """One backend.

    source: "onnx" (the model goes through an ONNX file, then `convert` if set) or "checkpoint" (the
    model's own PyTorch weights). artifact_filename: what the export cache stores for it.
    """

    name: str
    summary: str
    module: str
    session: str
    source: str
    artifact_filename: str
    parameters: tuple[ParameterSpec, ...]
    requirements: str
    pip_packages: tuple[str, ...]
    convert: str | None = None
    expect_rocm: bool = False

    def runtime(self) -> ModuleType:
        """The backend's session module; a missing runtime package is a ConfigError naming what to install."""
        try:
            return importlib.import_module(self.module)
        except ImportError as e:
            raise ConfigError(f"the {self.name} backend needs {', '.join(self.pip_packages)} "
                              f"(pip install -r requirements/{self.requirements}): {e}") from e

    def runtime_fields(self, options: Mapping[str, Any]) -> dict[str, str]:
        """Runtime versions (and GPU generation) an artifact of this backend depends on."""
        return self.runtime().runtime_fields(options)

    def converter(self) -> Callable[..., dict[str, str]] | None:
        """ONNX file -> this backend's artifact, or None when the ONNX file is the artifact."""
        return getattr(self.runtime(), self.convert) if self.convert else None

    def session_class(self) -> Any:
        return getattr(self.runtime(), self.session)

    def options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """This backend's settings (not its reports) taken from a node's parameter values."""
        return {p.name: values[p.name] for p in self.parameters if p.applies != "report"}

    def report_parameter(self) -> str:
        """The parameter that states what is really running."""
        return next(p.name for p in self.parameters if p.applies == "report")

    def option_problem(self, name: str, value: Any) -> str:
        """'' if `value` can work for setting `name` of this backend, else why not (naming what is valid)."""
        check = getattr(self.runtime(), "option_problem", None)
        return check(name, value) if check else ""


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend(
        name="onnx", summary="ONNX Runtime; execution provider chosen by parameter",
        module="vision_factory.backends.onnxruntime_session", session="OnnxRuntimeSession",
        source="onnx", artifact_filename="model.onnx", requirements="onnx.txt", pip_packages=("onnxruntime",),
        parameters=_onnxruntime_parameters("cpu")),
    Backend(
        name="openvino", summary="OpenVINO Runtime on an OpenVINO IR converted from ONNX",
        module="vision_factory.backends.openvino_session", session="OpenVinoSession",
        source="onnx", artifact_filename="model.xml", convert="convert_onnx", requirements="openvino.txt",
        pip_packages=("openvino",),
        parameters=(
            ParameterSpec("device", "string", "CPU", "OpenVINO device: CPU, GPU, NPU or AUTO.", applies="rebuild"),
            ParameterSpec("precision", "string", "fp32", "Inference precision hint; fp32 matches the reference, "
                          "bf16 / fp16 are faster where the device has them.", choices=("fp32", "fp16", "bf16"),
                          applies="rebuild"),
            _ACTIVE_DEVICE,
        )),
    Backend(
        name="tensorrt", summary="TensorRT engine built from ONNX (not verifiable on CPU-only machines)",
        module="vision_factory.backends.tensorrt_session", session="TensorRtSession",
        source="onnx", artifact_filename="model.engine", convert="build_engine", requirements="tensorrt.txt",
        pip_packages=("tensorrt", "cuda-python"),
        parameters=(
            ParameterSpec("device", "string", "0", "CUDA GPU index (0 or cuda:0).", applies="rebuild"),
            ParameterSpec("precision", "string", "fp16", "Engine precision.", choices=("fp16", "fp32"),
                          applies="rebuild"),
            _ACTIVE_DEVICE,
        )),
    Backend(
        name="cuda", summary="PyTorch on an NVIDIA GPU (CPU fallback with a warning)",
        module="vision_factory.backends.torch_session", session="TorchSession",
        source="checkpoint", artifact_filename="", requirements="torch.txt",
        pip_packages=("torch", "ultralytics"),
        parameters=(
            ParameterSpec("device", "string", "cuda:0", _TORCH_DEVICE, applies="rebuild"),
            ParameterSpec("precision", "string", "fp32", "Inference precision (fp16 on GPU only).",
                          choices=("fp32", "fp16"), applies="rebuild"),
            _ACTIVE_DEVICE,
        )),
    Backend(
        name="rocm", summary="PyTorch (ROCm build) on an AMD GPU (CPU fallback with a warning)",
        module="vision_factory.backends.torch_session", session="TorchSession",
        source="checkpoint", artifact_filename="", requirements="torch.txt",
        pip_packages=("torch (ROCm build)", "ultralytics"), expect_rocm=True,
        parameters=(
            ParameterSpec("device", "string", "cuda:0", _TORCH_DEVICE, applies="rebuild"),
            ParameterSpec("precision", "string", "fp32", "Inference precision (fp16 on GPU only).",
                          choices=("fp32", "fp16"), applies="rebuild"),
            _ACTIVE_DEVICE,
        )),
)}


def _onnxruntime_gpu(name: str, provider: str, gpu: str, requirements: str, package: str) -> Backend:
    return Backend(
        name=name, summary=f"ONNX Runtime's {provider} execution provider on an {gpu} GPU (CPU fallback with "
                           f"a warning)",
        module="vision_factory.backends.onnxruntime_session", session="OnnxRuntimeSession",
        source="onnx", artifact_filename="model.onnx", requirements=requirements, pip_packages=(package,),
        parameters=_onnxruntime_parameters(f"{name},cpu"))  # cpu last: the fallback


# cuda and rocm for models whose manifest says `gpu_runtime: onnxruntime`.
ONNXRUNTIME_GPU_BACKENDS: dict[str, Backend] = {
    "cuda": _onnxruntime_gpu("cuda", "CUDA", "NVIDIA", "onnx-cuda.txt", "onnxruntime-gpu"),
    "rocm": _onnxruntime_gpu("rocm", "ROCm", "AMD", "onnx-rocm.txt", "onnxruntime-rocm"),
}
# What a manifest's gpu_runtime can name: the runtime of its cuda and rocm backends.
GPU_RUNTIMES = ("pytorch", "onnxruntime")


def get_backend(name: str, gpu_runtime: str = "pytorch") -> Backend:
    """The backend called `name` for a model whose cuda / rocm backends run `gpu_runtime`; ConfigError
    listing the known ones otherwise."""
    if gpu_runtime == "onnxruntime" and name in ONNXRUNTIME_GPU_BACKENDS:
        return ONNXRUNTIME_GPU_BACKENDS[name]
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})") from None


def all_backend_parameters() -> set[str]:
    """Names of every parameter any backend declares (a model's own parameters must not reuse them)."""
    rows = [*BACKENDS.values(), *ONNXRUNTIME_GPU_BACKENDS.values()]
    return {p.name for row in rows for p in row.parameters}
