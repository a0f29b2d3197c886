"""The registry of backends: the one place that knows each backend's runtime, artifact and parameters.

Each row holds the code that opens its sessions and converts for it; the generator and the node look a
row up once (Manifest.backend) and pass it down. cuda and rocm are two rows of one implementation.
What the cuda and rocm backends run depends on the model: PyTorch on the model's checkpoint (BACKENDS),
or, for models whose weights are ONNX files (a manifest's `gpu_runtime: onnxruntime`), ONNX Runtime's
CUDA / ROCm execution providers (ONNXRUNTIME_GPU_BACKENDS).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from vision_factory.backends import (onnxruntime_session, openvino_session, remote_session, tensorrt_session,
                                     torch_session)
from vision_factory.backends.session import Session
from vision_factory.errors import ConfigError
from vision_factory.parameters import ParameterSpec

_DEVICE_INDEX = "GPU index used by GPU execution providers (CUDA, TensorRT, ROCm, MIGraphX)."
_CALIBRATION_DATA = ParameterSpec(
    "calibration_data", "string", "", "precision int8: frames from the node's camera to calibrate on (a folder of "
    "images, a video or a rosbag2 folder; at most 100 frames, sampled evenly).", applies="rebuild")
# Measured (YOLOv8n, 2 cores): one thread per physical core (the runtimes' default) is fastest; fewer leave cores
# to other nodes.
_THREADS = ParameterSpec("inference_threads", "integer", 0, "Threads one inference runs on (intra-op); 0: the "
                         "runtime's default, one per physical core.", range=(0, 256), applies="rebuild")
_ACTIVE_DEVICE = ParameterSpec("active_device", "string", "", "The device and precision really running.",
                               applies="report")


def _onnxruntime_parameters(providers: str) -> tuple[ParameterSpec, ...]:
    """What every ONNX Runtime backend row declares; `providers` is its default provider list."""
    return (
        ParameterSpec("execution_provider", "string", providers, "Ordered execution providers, e.g. 'cuda,cpu' or "
                      "ONNX Runtime names; unavailable ones are skipped with a warning.", applies="rebuild"),
        ParameterSpec("device", "string", "0", _DEVICE_INDEX, applies="rebuild"),
        ParameterSpec("precision", "string", "fp32", "fp32, or int8: the network quantised (static, calibrated on "
                      "calibration_data) on first launch into the cache.", choices=("fp32", "int8"), applies="rebuild"),
        _CALIBRATION_DATA,
        _THREADS,
        # Measured (yolo_onnx node, YOLOv8n fp32, 20 launches each, threads not pinned): spinning, 15 launches at
        # 59-61 ms and 5 at 67-78; not spinning, 60-64 ms but one at 68. A dynamically quantised network spinning ran
        # 2x slower in 2 launches of 5 (its session alone), not spinning 5 of 5 alike.
        ParameterSpec("allow_spinning", "bool", False, "ONNX Runtime's threads spin while waiting for work: ~2 ms "
                      "less per YOLOv8n frame when it goes well, but slow launches (up to 2x) and a third of a core "
                      "busier; off by default.", applies="rebuild"),
        ParameterSpec("active_execution_provider", "string", "", "The execution providers ONNX Runtime "
                      "really runs, in order.", applies="report"),
    )


_TORCH_DEVICE = ("PyTorch device: cuda:N (ROCm builds use the same names) or cpu. Falls back to cpu with "
                 "one warning when no GPU is visible.")


@dataclass(frozen=True)
class Backend:
    """One backend: the code that opens its sessions and converts ONNX files for it, and what it declares.

    loads: "onnx" (the model goes through an ONNX file, then `converter` if set) or "checkpoint" (the
    model's own PyTorch weights). runtime: the session module (option_problem, runtime_fields).
    opener(artifact, options, logger) -> Session. converter(onnx, dst, options, logger) -> versions, or None
    when the ONNX file is the artifact. artifact_filename: what the export cache stores for it.
    """

    name: str
    summary: str
    runtime: ModuleType
    opener: Callable[..., Session]
    loads: str
    artifact_filename: str
    parameters: tuple[ParameterSpec, ...]
    requirements: str
    pip_packages: tuple[str, ...]
    converter: Callable[..., dict[str, str]] | None = None

    def _needs_runtime(self, call: Callable[..., Any], *args: Any) -> Any:
        """call(*args); a runtime package that cannot be imported is a ConfigError naming what to install."""
        try:
            return call(*args)
        except ImportError as e:
            raise ConfigError(f"the {self.name} backend needs {', '.join(self.pip_packages)} "
                              f"(pip install -r requirements/{self.requirements}): {e}") from e

    def open(self, artifact: Any, options: Mapping[str, Any], logger: Any) -> Session:
        """A session on `artifact` (artifacts.Artifact) with this backend's `options`."""
        return self._needs_runtime(self.opener, artifact, options, logger)

    def convert(self, onnx_path: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
        """Write this backend's artifact of `onnx_path` to `dst` (only for backends with a converter)."""
        return self._needs_runtime(self.converter, onnx_path, dst, options, logger)

    def runtime_fields(self, options: Mapping[str, Any]) -> dict[str, str]:
        """Runtime versions (and GPU generation) an artifact of this backend depends on."""
        return self._needs_runtime(self.runtime.runtime_fields, options)

    def options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """This backend's settings (not its reports) taken from a node's parameter values; defaults for those
        `values` lacks (a node of another backend, e.g. tensorrt's int8 calibrating on onnx)."""
        return {p.name: values.get(p.name, p.default) for p in self.parameters if p.applies != "report"}

    def report_parameter(self) -> str:
        """The parameter that states what is really running."""
        return next(p.name for p in self.parameters if p.applies == "report")

    def option_problem(self, name: str, value: Any) -> str:
        """'' if `value` can work for setting `name` of this backend, else why not (naming what is valid)."""
        if name == _CALIBRATION_DATA.name:  # empty is fine until precision int8 needs it
            return f"'{value}' does not exist" if value and not Path(str(value)).expanduser().exists() else ""
        return self._needs_runtime(self.runtime.option_problem, name, value)


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend(
        name="onnx", summary="ONNX Runtime; execution provider chosen by parameter",
        runtime=onnxruntime_session, opener=onnxruntime_session.open_session,
        loads="onnx", artifact_filename="model.onnx", requirements="onnx.txt", pip_packages=("onnxruntime",),
        parameters=_onnxruntime_parameters("cpu")),
    Backend(
        name="openvino", summary="OpenVINO Runtime on an OpenVINO IR converted from ONNX",
        runtime=openvino_session, opener=openvino_session.open_session, converter=openvino_session.convert_onnx,
        loads="onnx", artifact_filename="model.xml", requirements="openvino.txt",
        pip_packages=("openvino",),
        parameters=(
            ParameterSpec("device", "string", "CPU", "OpenVINO device: CPU, GPU, NPU or AUTO.", applies="rebuild"),
            ParameterSpec("precision", "string", "fp32", "Inference precision hint; fp32 matches the reference, "
                          "bf16 / fp16 are faster where the device has them; auto: the device's own choice "
                          "(bf16 on CPUs with bf16 units, fp16 on GPUs); int8: the network quantised with NNCF "
                          "(calibrated on calibration_data) on first launch into the cache.",
                          choices=("fp32", "fp16", "bf16", "auto", "int8"), applies="rebuild"),
            _CALIBRATION_DATA,
            _THREADS,
            # Measured (YOLOv8n bf16, 2 cores, pre- and post-processing in the loop): throughput 37.9 against
            # 32.7 frames/s, p50 latency 51 against 30 ms.
            ParameterSpec("performance_mode", "string", "latency", "latency: one frame at a time, each as fast "
                          "as the device allows (for callers that wait for each answer). throughput: "
                          "OpenVINO's THROUGHPUT hint: several frames in flight (the device's optimal number of "
                          "infer requests), answers published in frame order: more answers per second when "
                          "frames come faster than one inference, each one later.",
                          choices=("latency", "throughput"), applies="rebuild"),
            _ACTIVE_DEVICE,
        )),
    Backend(
        name="tensorrt", summary="TensorRT engine built from ONNX (not verifiable on CPU-only machines)",
        runtime=tensorrt_session, opener=tensorrt_session.open_session, converter=tensorrt_session.build_engine,
        loads="onnx", artifact_filename="model.engine", requirements="tensorrt.txt",
        pip_packages=("tensorrt", "cuda-python"),
        parameters=(
            ParameterSpec("device", "string", "0", "CUDA GPU index (0 or cuda:0).", applies="rebuild"),
            ParameterSpec("precision", "string", "fp16", "Engine precision; auto: fp16 where the GPU has fast "
                          "fp16 (compute capability 5.3 and later but 6.1), else fp32; int8: the network quantised "
                          "for TensorRT's explicit quantization (calibrated on calibration_data), the rest as auto.",
                          choices=("fp16", "fp32", "auto", "int8"), applies="rebuild"),
            _CALIBRATION_DATA,
            _ACTIVE_DEVICE,
        )),
    Backend(
        name="cuda", summary="PyTorch on an NVIDIA GPU (CPU fallback with a warning)",
        runtime=torch_session, opener=torch_session.open_session,
        loads="checkpoint", artifact_filename="", requirements="torch.txt",
        pip_packages=("torch", "ultralytics"),
        parameters=(
            ParameterSpec("device", "string", "cuda:0", _TORCH_DEVICE, applies="rebuild"),
            ParameterSpec("precision", "string", "fp32", "Inference precision (fp16 on GPU only; auto: fp16 on "
                          "a GPU, fp32 on the CPU fallback).", choices=("fp32", "fp16", "auto"), applies="rebuild"),
            _THREADS,
            _ACTIVE_DEVICE,
        )),
    Backend(
        name="rocm", summary="PyTorch (ROCm build) on an AMD GPU (CPU fallback with a warning)",
        runtime=torch_session, opener=partial(torch_session.open_session, expect_rocm=True),
        loads="checkpoint", artifact_filename="", requirements="torch.txt",
        pip_packages=("torch (ROCm build)", "ultralytics"),
        parameters=(
            ParameterSpec("device", "string", "cuda:0", _TORCH_DEVICE, applies="rebuild"),
            ParameterSpec("precision", "string", "fp32", "Inference precision (fp16 on GPU only; auto: fp16 on "
                          "a GPU, fp32 on the CPU fallback).", choices=("fp32", "fp16", "auto"), applies="rebuild"),
            _THREADS,
            _ACTIVE_DEVICE,
        )),
    Backend(
        name="remote", summary="An inference server (Triton, KServe, OpenVINO Model Server, MLServer) over the "
                               "Open Inference Protocol",
        runtime=remote_session, opener=remote_session.open_session,
        loads="onnx", artifact_filename="model.onnx", requirements="remote.txt", pip_packages=("tritonclient",),
        parameters=(
            ParameterSpec("server_url", "string", "grpc://localhost:8001", "The server: grpc://host:port (the "
                          "default protocol), http://host:port, or grpcs:// / https:// for TLS.", applies="rebuild"),
            ParameterSpec("model_name", "string", "", "The network's name on the server; empty: the model's "
                          "(e.g. yolo), as `vision-factory export --repository` names it. Other weights of a model "
                          "are served as <name>_<weights parameter>.", applies="rebuild"),
            ParameterSpec("model_version", "string", "", "The version to use; empty: the server's choice.",
                          applies="rebuild"),
            ParameterSpec("connect_timeout_s", "double", 5.0, "Longest wait for the server to answer while "
                          "connecting.", range=(0.1, 600.0), applies="rebuild"),
            ParameterSpec("request_timeout_s", "double", 10.0, "Longest wait for one inference.",
                          range=(0.01, 600.0), applies="rebuild"),
            ParameterSpec("retries", "integer", 2, "Times a request the server did not answer is sent again "
                          "(after 0.1 s, then twice as long each time, at most 1 s).", range=(0, 10),
                          applies="rebuild"),
            ParameterSpec("tls_ca_file", "string", "", "PEM file of the certificate authorities to trust with "
                          "grpcs:// / https://; empty: the system's.", applies="rebuild"),
            ParameterSpec("auth_header_env", "string", "", "Name of an environment variable holding a header "
                          "sent with every request, e.g. 'Authorization: Bearer ...' (not a parameter: any node "
                          "can read those); empty: none.", applies="rebuild"),
            ParameterSpec("active_server", "string", "", "The server and model really answering.",
                          applies="report"),
        )),
)}


def _onnxruntime_gpu(name: str, provider: str, gpu: str, requirements: str, package: str) -> Backend:
    return Backend(
        name=name, summary=f"ONNX Runtime's {provider} execution provider on an {gpu} GPU (CPU fallback with "
                           f"a warning)",
        runtime=onnxruntime_session, opener=onnxruntime_session.open_session,
        loads="onnx", artifact_filename="model.onnx", requirements=requirements, pip_packages=(package,),
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
