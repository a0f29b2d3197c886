"""Backend sessions: provider / device selection, fallbacks and errors; TensorRT through test doubles."""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from vision_factory.backends import BACKENDS, get_backend
from vision_factory.backends.onnxruntime_session import OnnxRuntimeSession, parse_providers
from vision_factory.cpus import physical_cores
from vision_factory.backends.session import BackendError
from vision_factory.errors import ConfigError

INPUT = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)


@pytest.fixture(scope="module")
def doubling_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX model: y = 2 x, input 'images' [1, 1, 2, 3]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["images", "images"], ["output0"])], "double",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 1, 2, 3])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 1, 2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "double.onnx"
    onnx.save(model, str(path))
    return path


def test_provider_names_parse_in_order() -> None:
    assert parse_providers("cuda, cpu") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert parse_providers("TensorrtExecutionProvider,CPU") == ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="unknown execution provider 'cuda11' \\(known: cpu, cuda"):
        parse_providers("cuda11,cpu")
    with pytest.raises(ValueError, match="execution_provider is empty"):
        parse_providers(" , ")


def test_onnxruntime_skips_unavailable_providers_and_says_so(doubling_onnx: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    session = OnnxRuntimeSession(doubling_onnx, {"execution_provider": "cuda,cpu", "device": "0"},
                                 logging.getLogger("t"))
    assert session.active == "CPUExecutionProvider"
    assert "skipped: CUDAExecutionProvider (available: " in caplog.text
    assert session.input_name == "images" and session.input_shape == (1, 1, 2, 3)
    np.testing.assert_array_equal(session.run({"images": INPUT})[0], 2 * INPUT)


def test_onnxruntime_without_any_usable_provider_fails_clearly(doubling_onnx: Path) -> None:
    with pytest.raises(BackendError, match="none of the requested execution providers is available "
                                           "\\(CUDAExecutionProvider\\); available: .*CPUExecutionProvider"):
        OnnxRuntimeSession(doubling_onnx, {"execution_provider": "cuda"})


def test_openvino_converts_and_runs_on_cpu_and_auto(doubling_onnx: Path, tmp_path: Path) -> None:
    from vision_factory.backends.openvino_session import OpenVinoSession, convert_onnx

    xml = tmp_path / "model.xml"
    assert convert_onnx(doubling_onnx, xml, {}, logging.getLogger("t"))["converter"].startswith("openvino ")
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    cpu = OpenVinoSession(xml, {"device": "CPU"})
    assert cpu.active == "CPU (fp32)" and cpu.input_shape == (1, 1, 2, 3)
    assert cpu._compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    np.testing.assert_array_equal(cpu.run({"images": INPUT})[0], 2 * INPUT)
    auto = OpenVinoSession(xml, {"device": "AUTO"})
    assert auto.active.startswith("AUTO (") and "CPU" in auto.active
    with pytest.raises(BackendError, match="OpenVINO device 'NPU' is not available \\(available: CPU"):
        OpenVinoSession(xml, {"device": "npu"})


def test_openvino_throughput_mode_runs_requests_in_parallel_with_the_same_results(doubling_onnx: Path,
                                                                                 tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from vision_factory.backends.openvino_session import OpenVinoSession, convert_onnx

    xml = tmp_path / "model.xml"
    convert_onnx(doubling_onnx, xml, {}, logging.getLogger("t"))
    latency = OpenVinoSession(xml, {"device": "CPU"})
    assert latency.in_flight == 1 and latency._compiled.get_property("PERFORMANCE_HINT") == "LATENCY"
    throughput = OpenVinoSession(xml, {"device": "CPU", "performance_mode": "throughput"})
    assert throughput._compiled.get_property("PERFORMANCE_HINT") == "THROUGHPUT"
    optimal = throughput._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    assert throughput.in_flight == optimal >= 1
    assert throughput.active == f"CPU (fp32), throughput: {optimal} requests"
    inputs = [INPUT + i for i in range(64)]
    with ThreadPoolExecutor(4) as pool:  # more callers than requests: each waits for an idle one
        outputs = list(pool.map(lambda x: throughput.run({"images": x})[0], inputs))
    for x, y in zip(inputs, outputs):
        np.testing.assert_array_equal(y, latency.run({"images": x})[0])


def test_a_throughput_node_warms_every_infer_request_at_load(tmp_path: Path) -> None:
    """The first inference allocates and prepacks (0.1 s or more): each infer request pays it at load, not on
    the first frames it gets."""
    from conftest import FP32_ONNX, asset
    from vision_factory.loaded_model import load_default_model

    loaded = load_default_model("yolo", "openvino", asset(FP32_ONNX), tmp_path, logging.getLogger("t"),
                                performance_mode="throughput")
    session = loaded.sessions["model"]
    requests = [session._idle.get() for _ in range(session.in_flight)]
    assert loaded.in_flight == len(requests) >= 1
    assert all(request.latency > 0 for request in requests)  # 0.0 until a request has run


def test_thread_settings_reach_each_runtime(doubling_onnx: Path, tmp_path: Path) -> None:
    import torch

    from vision_factory.backends.onnxruntime_session import OnnxRuntimeSession
    from vision_factory.backends.openvino_session import OpenVinoSession, convert_onnx
    from vision_factory.backends.torch_session import TorchSession

    ort_session = OnnxRuntimeSession(doubling_onnx, {"inference_threads": 1, "allow_spinning": True})._session
    assert ort_session.get_session_options().intra_op_num_threads == 1
    assert ort_session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
    default = OnnxRuntimeSession(doubling_onnx, {})._session.get_session_options()
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert default.intra_op_num_threads == physical_cores()  # never 0: see the next test
    xml = tmp_path / "model.xml"
    convert_onnx(doubling_onnx, xml, {}, logging.getLogger("t"))
    assert OpenVinoSession(xml, {"device": "CPU", "inference_threads": 1})._compiled.get_property(
        "INFERENCE_NUM_THREADS") == 1
    starting = torch.get_num_threads()
    TorchSession(Path("double.pt"), torch.nn.Identity(), {"device": "cpu", "inference_threads": 1})
    assert torch.get_num_threads() == 1
    TorchSession(Path("double.pt"), torch.nn.Identity(), {"device": "cpu", "inference_threads": 0})
    assert torch.get_num_threads() == starting


PINNED_THREADS = """
import os, sys
from pathlib import Path
import numpy as np
from vision_factory.backends.onnxruntime_session import OnnxRuntimeSession
session = OnnxRuntimeSession(Path(sys.argv[1]), {})
session.run({"images": np.zeros((1, 1, 2, 3), np.float32)})
allowed = {line.split(":")[1].strip() for task in os.listdir("/proc/self/task")
           for line in open(f"/proc/self/task/{task}/status") if line.startswith("Cpus_allowed_list")}
print(len(allowed))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread affinities from Linux's /proc")
def test_onnxruntime_pins_no_thread_to_a_core(doubling_onnx: Path) -> None:
    """ONNX Runtime's own default thread count pins its intra-op threads to cores; the thread that calls run()
    then shared a core with one of them in most launches here (YOLOv8n 68-70 ms against 52-54). In a process
    of its own: other runtimes this suite loads (OpenVINO) pin threads of their own."""
    import subprocess

    result = subprocess.run([sys.executable, "-c", PINNED_THREADS, str(doubling_onnx)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"], "threads with different affinities: some are pinned"


def test_registry_lookup_and_missing_runtimes() -> None:
    assert get_backend("cuda").runtime is get_backend("rocm").runtime  # one implementation, two rows
    known = "onnx, openvino, tensorrt, cuda, rocm, remote"
    with pytest.raises(ConfigError, match=f"unknown backend 'vulkan' \\(known: {known}\\)"):
        get_backend("vulkan")
    def needs_an_absent_runtime(*_: object) -> None:
        import vision_factory_no_such_runtime  # noqa: F401

    absent = dataclasses.replace(BACKENDS["tensorrt"], opener=needs_an_absent_runtime)
    with pytest.raises(ConfigError, match="the tensorrt backend needs tensorrt, cuda-python "
                                          "\\(pip install -r requirements/tensorrt.txt\\)"):
        absent.open(None, {}, logging.getLogger("t"))


def test_torch_device_falls_back_to_cpu_with_one_warning(caplog) -> None:
    pytest.importorskip("torch")
    from vision_factory.backends.torch_session import resolve_device

    import torch

    logger = logging.getLogger("t")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the fallback cannot be observed")
    assert resolve_device("cuda:0", False, logger) == "cpu"
    assert caplog.text.count("falling back from cuda:0 to cpu") == 1
    assert resolve_device("cpu", False, logger) == "cpu"
    assert resolve_device("cuda:1", True, logger) == "cpu"
    assert "the rocm backend runs on a" in caplog.text
    with pytest.raises(BackendError, match="malformed device 'gpu0'"):
        resolve_device("gpu0", False, logger)


def test_torch_session_runs_a_module_in_fp32_on_cpu() -> None:
    torch = pytest.importorskip("torch")
    from vision_factory.backends.torch_session import TorchSession

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    session = TorchSession(Path("double.pt"), Double(), {"device": "cuda:0", "precision": "fp16"})
    assert session.active == "cpu (fp32)"  # fp16 needs a GPU
    np.testing.assert_array_equal(session.run({"images": INPUT})[0], 2 * INPUT)


# --- TensorRT through test doubles of `tensorrt` and cuda-python's runtime -------------------------

class FakeCudart(types.ModuleType):
    """Device memory as host buffers; records the calls the session makes."""

    class cudaMemcpyKind:  # noqa: N801 (cuda-python's names)
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    class cudaDeviceAttr:  # noqa: N801
        cudaDevAttrComputeCapabilityMajor, cudaDevAttrComputeCapabilityMinor = 75, 76

    def __init__(self) -> None:
        super().__init__("cudart")
        self.buffers: dict[int, ctypes.Array] = {}
        self.device = None

    def cudaSetDevice(self, device):  # noqa: N802
        self.device = device
        return (0,)

    def cudaMalloc(self, nbytes):  # noqa: N802
        buffer = ctypes.create_string_buffer(nbytes)
        self.buffers[ctypes.addressof(buffer)] = buffer
        return 0, ctypes.addressof(buffer)

    def cudaFree(self, pointer):  # noqa: N802
        self.buffers.pop(pointer, None)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaStreamCreate(self):  # noqa: N802
        return 0, 1

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaDeviceGetAttribute(self, attribute, device):  # noqa: N802
        return 0, {75: 8, 76: 9}[attribute]


def fake_tensorrt(parse_ok: bool = True) -> types.ModuleType:
    """The TensorRT 10 API surface the backend uses; the 'engine' doubles its input."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0-fake"
    trt.calls = []
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=0: None})
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.nptype = lambda dtype: {"float": np.float32, "int64": np.int64}[dtype]

    class Config:
        def set_memory_pool_limit(self, pool, size):
            trt.calls.append(("pool", pool, size))

        def set_flag(self, flag):
            trt.calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            trt.calls.append(("profile", profile.shapes))

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, smallest, optimal, largest):
            self.shapes[name] = (smallest, optimal, largest)

    class Builder:

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return "network"

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"ENGINE"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse(self, data):
            trt.calls.append(("parse", len(data)))
            return parse_ok

        def get_error(self, index):
            return "unsupported operator Foo"

    class Engine:
        """Static: 'images' (1, 1, 2, 3) float -> 'output0', doubled. Dynamic: 'tokens' (1, -1) int64, profile
        1..8 tokens -> 'doubled'."""

        def __init__(self, dynamic: bool):
            names = (["tokens", "doubled"] if dynamic else ["images", "output0"])
            self.shapes = dict(zip(names, [(1, -1)] * 2 if dynamic else [(1, 1, 2, 3)] * 2))
            self.dtype = "int64" if dynamic else "float"
            self.names, self.num_io_tensors = names, 2

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_shape(self, name):
            return self.shapes[name]

        def get_tensor_dtype(self, name):
            return self.dtype

        def get_tensor_mode(self, name):
            return "INPUT" if name == self.names[0] else "OUTPUT"

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 1), (1, 4), (1, 8)]

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses, self.input_shape = engine, {}, None

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer

        def set_input_shape(self, name, shape):
            trt.calls.append(("input_shape", name, tuple(shape)))
            if not 1 <= shape[1] <= 8:
                return False
            self.input_shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return self.input_shape or self.engine.shapes[name]

        def execute_async_v3(self, stream):
            count = int(np.prod(self.get_tensor_shape(self.engine.names[0])))
            kind = ctypes.c_int64 if self.engine.dtype == "int64" else ctypes.c_float
            source, target = (np.ctypeslib.as_array((kind * count).from_address(self.addresses[name]))
                              for name in self.engine.names)
            target[:] = 2 * source
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return {b"ENGINE": Engine(False), b"DYNAMIC": Engine(True)}.get(data)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):
    cudart = FakeCudart()
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    trt = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt, cudart


def test_tensorrt_builds_an_fp16_engine_and_keys_it_by_gpu_generation(fake_gpu, doubling_onnx, tmp_path) -> None:
    from vision_factory.backends import tensorrt_session

    trt, cudart = fake_gpu
    engine = tmp_path / "model.engine"
    info = tensorrt_session.build_engine(doubling_onnx, engine, {"device": "cuda:1", "precision": "fp16"},
                                         logging.getLogger("t"))
    assert engine.read_bytes() == b"ENGINE" and info == {"converter": "tensorrt 10.0-fake"}
    assert ("flag", "FP16") in trt.calls and cudart.device == 1
    assert ("pool", "WORKSPACE", tensorrt_session.WORKSPACE_BYTES) in trt.calls
    fields = tensorrt_session.runtime_fields({"device": "0", "precision": "fp32"})
    assert fields == {"tensorrt": "10.0-fake", "compute_capability": "8.9", "precision": "fp32"}
    trt.calls.clear()
    tensorrt_session.build_engine(doubling_onnx, engine, {"precision": "fp32"}, logging.getLogger("t"))
    assert ("flag", "FP16") not in trt.calls


@pytest.mark.parametrize("capability, built", [((8, 9), "fp16"), ((7, 5), "fp16"), ((6, 1), "fp32")])
def test_tensorrt_auto_builds_fp16_where_the_gpu_has_fast_fp16(fake_gpu, doubling_onnx, tmp_path, capability,
                                                                built) -> None:
    from vision_factory.backends import tensorrt_session

    trt, cudart = fake_gpu
    cudart.cudaDeviceGetAttribute = lambda attribute, device: (0, dict(zip((75, 76), capability))[attribute])
    engine = tmp_path / "model.engine"
    tensorrt_session.build_engine(doubling_onnx, engine, {"precision": "auto"}, logging.getLogger("t"))
    assert (("flag", "FP16") in trt.calls) == (built == "fp16")
    # The cache key holds what was built: auto's engine is the fp16 (or fp32) one.
    assert tensorrt_session.runtime_fields({"precision": "auto"})["precision"] == built
    assert tensorrt_session.TensorRtSession(engine, {"precision": "auto"}).active == f"cuda:0 (auto: {built} engine)"


def test_tensorrt_int8_builds_its_engine_from_a_symmetric_qdq_network_calibrated_on_the_cpu(
        fake_gpu, monkeypatch, tmp_path) -> None:
    """TensorRT's int8 is explicit quantization: onnxruntime quantises the network in TensorRT's form (zero
    points 0, only the inputs of weighted ops), calibrated on the bag through onnxruntime on the CPU, and the
    engine is built from that network with the INT8 flag. No GPU here: onnxruntime runs the network the engine
    was given in its place, so the detections below are that int8 network's."""
    import cv2
    import onnx
    import onnxruntime

    from conftest import ASSETS, BAG, FP32_ONNX, asset
    from vision_factory.backends import tensorrt_session
    from vision_factory.loaded_model import load_default_model
    from vision_factory.quantization import WEIGHTED_OPS

    trt, _ = fake_gpu
    given = {}
    monkeypatch.setattr(trt.OnnxParser, "parse", lambda self, data: given.update(network=data) or True)
    monkeypatch.setattr(trt.Builder, "build_serialized_network", lambda self, network, config: given["network"])

    class NetworkOnTheCpu:
        def __init__(self, engine_path: Path, options, logger=None):
            self._session = onnxruntime.InferenceSession(engine_path.read_bytes())
            first = self._session.get_inputs()[0]
            self.input_name, self.input_shape, self.active = first.name, tuple(first.shape), "cpu"

        def run(self, inputs):
            return self._session.run(None, dict(inputs))

    monkeypatch.setattr(tensorrt_session, "TensorRtSession", NetworkOnTheCpu)
    calibration = str(asset(BAG))
    loaded = load_default_model("yolo", "tensorrt", asset(FP32_ONNX), tmp_path, logging.getLogger("t"),
                                precision="int8", calibration_data=calibration)
    assert loaded.artifact.path.name == "model.engine" and loaded.artifact.exported
    assert {("flag", "INT8"), ("flag", "FP16")} <= set(trt.calls)  # this GPU (8.9) has fast fp16 for the rest
    network = onnx.load_from_string(given["network"])
    constants = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in network.graph.initializer}
    quantizers = [node for node in network.graph.node if node.op_type == "QuantizeLinear"]
    assert quantizers and all(constants[node.input[2]].dtype == np.int8 and not constants[node.input[2]].any()
                              for node in quantizers)  # symmetric int8: TensorRT's only form
    readers: dict[str, set[str]] = {}
    for node in network.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    dequantized = [node.output[0] for node in network.graph.node if node.op_type == "DequantizeLinear"]
    assert all(readers[name] & WEIGHTED_OPS for name in dequantized)  # each pair is there for a weighted op
    found = loaded.model(cv2.imread(str(asset(ASSETS / "images" / "bus.jpg"))))
    assert sum(found.class_name(int(c)) == "person" for c in found.class_ids) >= 4
    again = load_default_model("yolo", "tensorrt", asset(FP32_ONNX), tmp_path, logging.getLogger("t"),
                               precision="int8", calibration_data=calibration)
    assert not again.artifact.exported and again.artifact.path == loaded.artifact.path


def test_tensorrt_parse_errors_are_reported(monkeypatch, fake_gpu, doubling_onnx, tmp_path) -> None:
    from vision_factory.backends import tensorrt_session

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(parse_ok=False))
    with pytest.raises(BackendError, match="cannot parse double.onnx: unsupported operator Foo"):
        tensorrt_session.build_engine(doubling_onnx, tmp_path / "e", {}, logging.getLogger("t"))


def test_tensorrt_session_moves_data_through_device_buffers(fake_gpu, tmp_path) -> None:
    from vision_factory.backends.tensorrt_session import TensorRtSession

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"ENGINE")
    session = TensorRtSession(engine, {"device": "0", "precision": "fp16"})
    assert session.input_name == "images" and session.input_shape == (1, 1, 2, 3)
    assert session.active == "cuda:0 (fp16 engine)"
    for scale in (1, 3):  # buffers are reused across frames
        np.testing.assert_array_equal(session.run({"images": scale * INPUT})[0], 2 * scale * INPUT)
    engine.write_bytes(b"OTHER")
    with pytest.raises(BackendError, match="cannot deserialize"):
        TensorRtSession(engine, {})
    with pytest.raises(BackendError, match="GPU index"):
        TensorRtSession(engine, {"device": "gpu"})


def test_tensorrt_engines_take_a_dynamic_axis_within_its_profile(fake_gpu, tmp_path) -> None:
    """An input axis the export declares dynamic, with its range in the ONNX metadata: the engine is built
    with an optimization profile over it, and the session sets each run's shape, keeps integer inputs integer
    and refuses a shape outside the profile."""
    import onnx
    from onnx import TensorProto, helper

    from vision_factory.backends import tensorrt_session
    from vision_factory.backends.session import DYNAMIC_AXIS_RANGES

    trt, _ = fake_gpu
    graph = helper.make_graph([helper.make_node("Add", ["tokens", "tokens"], ["doubled"])], "double_tokens",
                              [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "length"])],
                              [helper.make_tensor_value_info("doubled", TensorProto.INT64, [1, "length"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "tokens.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BackendError, match="dynamic axis 'length' with no range"):
        tensorrt_session.build_engine(path, tmp_path / "e", {}, logging.getLogger("t"))
    model.metadata_props.add(key=DYNAMIC_AXIS_RANGES, value='{"length": [1, 4, 8]}')
    onnx.save(model, str(path))
    tensorrt_session.build_engine(path, tmp_path / "e", {}, logging.getLogger("t"))
    assert ("profile", {"tokens": ((1, 1), (1, 4), (1, 8))}) in trt.calls
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"DYNAMIC")
    session = tensorrt_session.TensorRtSession(engine, {})
    assert session.input_shape == (1, -1) and ("input_shape", "tokens", (1, 8)) in trt.calls  # buffers: largest
    for tokens in (np.array([[101, 7, 102]]), np.arange(8).reshape(1, 8)):
        result, = session.run({"tokens": tokens})
        assert result.dtype == np.int64 and np.array_equal(result, 2 * tokens)
    with pytest.raises(BackendError, match="outside the engine's optimization profile"):
        session.run({"tokens": np.zeros((1, 9), np.int64)})


@pytest.mark.parametrize("backend, name, value, problem", [
    ("onnx", "execution_provider", "cuda,cpu", ""),
    ("onnx", "execution_provider", "cuda11,cpu", "unknown execution provider 'cuda11'"),
    ("onnx", "device", "1", ""),
    ("onnx", "device", "cuda:1", "'cuda:1' is not a GPU index"),
    ("openvino", "device", "AUTO:GPU,CPU", ""),
    ("openvino", "device", "GPU.1", ""),
    ("openvino", "device", "gpu 1", "is not an OpenVINO device name (available here: CPU"),
    ("tensorrt", "device", "cuda:0", ""),
    ("tensorrt", "device", "first", "is not a GPU index"),
    ("cuda", "device", "cuda:1", ""),
    ("rocm", "device", "cpu", ""),
    ("cuda", "device", "cuda1", "'cuda1' is not a PyTorch device such as cuda:0"),
])
def test_values_that_can_never_work_are_named(backend: str, name: str, value: str, problem: str) -> None:
    found = get_backend(backend).option_problem(name, value)
    assert (problem in found) if problem else found == ""
    if name == "execution_provider" and problem:
        assert "available here: " in found and "CPUExecutionProvider" in found
