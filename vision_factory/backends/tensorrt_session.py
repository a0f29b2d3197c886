"""TensorRT engines: built from ONNX with the tensorrt Python API, executed with CUDA device buffers.

Written against TensorRT 10 (named I/O tensors, execute_async_v3) and cuda-python's runtime bindings.
TensorRT cannot be installed on the project's CI machines: this module is tested with test doubles of
both APIs and is NOT verified on a real GPU there (see README).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vision_factory.backends.session import DYNAMIC_AXIS_RANGES, BackendError

WORKSPACE_BYTES = 1 << 30


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _check(result: tuple) -> Any:
    """cuda-python returns (error, *values); raise on error, return the values."""
    error, *values = result
    if int(error) != 0:
        raise BackendError(f"CUDA call failed: {error}")
    return values[0] if len(values) == 1 else values


def option_problem(name: str, value: Any) -> str:
    """'' if a setting can work, else why not."""
    if name == "device" and not str(value).removeprefix("cuda:").isdigit():
        return f"'{value}' is not a GPU index such as 0 or cuda:0"
    if name == "max_batch_size" and value != 1:
        # A dynamic batch axis needs an optimization profile, which build_engine does not make.
        return "the tensorrt backend builds its engines for one frame at a time: max_batch_size must be 1"
    return ""


def _device_index(options: Mapping[str, Any]) -> int:
    text = str(options.get("device", "0")).removeprefix("cuda:")
    if not text.isdigit():
        raise BackendError(f"tensorrt device must be a GPU index such as 0 or cuda:0, got '{text}'")
    return int(text)


def compute_capability(options: Mapping[str, Any]) -> tuple[int, int]:
    """(major, minor) of the GPU the options name."""
    cudart, device = _cudart(), _device_index(options)
    attr = cudart.cudaDeviceAttr
    return (int(_check(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, device))),
            int(_check(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, device))))


def fast_fp16(capability: tuple[int, int]) -> bool:
    """Whether a GPU of this compute capability runs fp16 fast (TensorRT 10.5 deprecated its own query for this
    in favour of CUDA's): from 5.3 on, except 6.1 (consumer Pascal: fp16 at 1/64 rate)."""
    return capability >= (5, 3) and capability != (6, 1)


def engine_precision(options: Mapping[str, Any], capability: tuple[int, int]) -> str:
    """The precision an engine is built in on a GPU of this compute capability: the `precision` option, with
    auto (and fp16 on a GPU without fast fp16, with a warning at build) resolved by fast_fp16. int8 stays int8:
    its network says which ops are int8 (explicit quantization), the others run as auto."""
    requested = str(options.get("precision", "fp16"))
    if requested not in ("fp16", "auto"):
        return requested
    return "fp16" if fast_fp16(capability) else "fp32"


def profile_shapes(onnx_path: Path) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Per input with a dynamic axis: its (min, opt, max) shapes, from the ranges the export wrote into the
    ONNX metadata (DYNAMIC_AXIS_RANGES); BackendError for a dynamic axis with no range."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    ranges = json.loads(metadata.get(DYNAMIC_AXIS_RANGES, "{}"))
    initializers = {initializer.name for initializer in model.graph.initializer}
    shapes = {}
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        dims = tensor.type.tensor_type.shape.dim
        if all(dim.HasField("dim_value") for dim in dims):
            continue
        missing = [dim.dim_param or "?" for dim in dims if not dim.HasField("dim_value") and dim.dim_param not in ranges]
        if missing:
            raise BackendError(f"input '{tensor.name}' of {onnx_path.name} has a dynamic axis '{missing[0]}' with no "
                               f"range for a TensorRT optimization profile; export it with a fixed size")
        shapes[tensor.name] = tuple(tuple(dim.dim_value if dim.HasField("dim_value") else ranges[dim.dim_param][i]
                                          for dim in dims) for i in range(3))
    return shapes


def build_engine(onnx_path: Path, engine_path: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
    """Parse `onnx_path`, build an engine (fp16 unless precision is fp32; one optimization profile over the
    ranges of its dynamic axes, if it has any) and serialize it to `engine_path`."""
    import tensorrt as trt

    cudart = _cudart()
    _check(cudart.cudaSetDevice(_device_index(options)))
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    dynamic = profile_shapes(onnx_path)
    if dynamic:
        profile = builder.create_optimization_profile()
        for name, (smallest, optimal, largest) in dynamic.items():
            profile.set_shape(name, smallest, optimal, largest)
        config.add_optimization_profile(profile)
    requested, capability = str(options.get("precision", "fp16")), compute_capability(options)
    precision = engine_precision(options, capability)
    if requested == "fp16" and precision != "fp16":
        logger.warning("this GPU has no fast fp16; building the TensorRT engine in fp32")
    if precision == "int8":  # the Q/DQ nodes of the network say where; the flag lets TensorRT run them in int8
        config.set_flag(trt.BuilderFlag.INT8)
    if precision == "fp16" or (precision == "int8" and fast_fp16(capability)):
        config.set_flag(trt.BuilderFlag.FP16)
    logger.info(f"building a TensorRT {precision} engine from {onnx_path.name}; this takes minutes once")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path.name}")
    engine_path.write_bytes(bytes(serialized))
    return {"converter": f"tensorrt {trt.__version__}"}


def runtime_fields(options: Mapping[str, Any]) -> dict[str, str]:
    """What an engine depends on besides its ONNX source: TensorRT version, GPU generation, the precision it is
    built in (auto's engine is the fp16 or fp32 one)."""
    import tensorrt as trt

    capability = compute_capability(options)
    return {"tensorrt": trt.__version__, "compute_capability": "{}.{}".format(*capability),
            "precision": engine_precision(options, capability)}


class TensorRtSession:
    """A deserialized engine with one device buffer per I/O tensor (sized for the largest shapes of its
    optimization profile, where an input has a dynamic axis), run on its own CUDA stream."""

    def __init__(self, engine_path: Path, options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)):
        import tensorrt as trt

        self._cudart = _cudart()
        device = _device_index(options)
        _check(self._cudart.cudaSetDevice(device))
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT cannot deserialize {engine_path} (built by another TensorRT "
                               f"version or GPU?)")
        self._context = self._engine.create_execution_context()
        self._stream = _check(self._cudart.cudaStreamCreate())
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._dtypes = {name: np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))) for name in names}
        self._inputs = [name for name in names if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        self._outputs = [name for name in names if name not in self._inputs]
        self._dynamic = {name for name in self._inputs if min(self._engine.get_tensor_shape(name)) < 0}
        for name in self._dynamic:  # the largest shapes: output buffers are sized for them
            self._context.set_input_shape(name, tuple(self._engine.get_tensor_profile_shape(name, 0)[2]))
        self._buffers: dict[str, int] = {}
        for name in names:
            shape = tuple(self._context.get_tensor_shape(name))
            if min(shape) < 0:
                raise BackendError(f"tensor '{name}' has a dynamic shape {shape} the engine gives no bound for")
            self._buffers[name] = _check(self._cudart.cudaMalloc(int(np.prod(shape)) * self._dtypes[name].itemsize))
            self._context.set_tensor_address(name, self._buffers[name])
        self.input_name = self._inputs[0]
        self.input_shape = tuple(self._engine.get_tensor_shape(self.input_name))
        requested = str(options.get("precision", "fp16"))
        precision = engine_precision(options, compute_capability(options))
        self.active = f"cuda:{device} ({precision if requested == precision else f'{requested}: {precision}'} engine)"
        logger.info(f"tensorrt {trt.__version__} running {engine_path.name} on {self.active}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        cudart = self._cudart
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self._inputs:
            host = np.ascontiguousarray(inputs[name], dtype=self._dtypes[name])
            if name in self._dynamic and not self._context.set_input_shape(name, host.shape):
                raise BackendError(f"input '{name}' of shape {host.shape} is outside the engine's "
                                   f"optimization profile {tuple(self._engine.get_tensor_profile_shape(name, 0))}")
            _check(cudart.cudaMemcpyAsync(self._buffers[name], host.ctypes.data, host.nbytes, to_device,
                                          self._stream))
        if not self._context.execute_async_v3(self._stream):
            raise BackendError("TensorRT execution failed")
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        results = []
        for name in self._outputs:
            host = np.empty(tuple(self._context.get_tensor_shape(name)), self._dtypes[name])
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name], host.nbytes, to_host,
                                          self._stream))
            results.append(host)
        _check(cudart.cudaStreamSynchronize(self._stream))
        return results

    def __del__(self) -> None:
        for pointer in getattr(self, "_buffers", {}).values():
            self._cudart.cudaFree(pointer)


def open_session(artifact: Any, options: Mapping[str, Any], logger: Any) -> TensorRtSession:
    """The backend row's opener: a session on the artifact's file (artifacts.Artifact)."""
    return TensorRtSession(artifact.path, options, logger)
