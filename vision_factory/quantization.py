"""int8: a model's fp32 networks quantised with calibration frames, as a cached artifact like any export.

Calibration feeds each network exactly what the model feeds it: the fp32 model runs on the calibration frames
through sessions that record their inputs (its own preprocessing, every network of a multi-network model),
then each network is quantised from what it saw. onnx: onnxruntime's static quantisation (QDQ, int8 weights
per channel, uint8 activations, MinMax ranges, the layer that reads the input kept in fp32); openvino: NNCF's
post-training quantisation; tensorrt: TensorRT's explicit quantization, the path NVIDIA recommends since
TensorRT 10.1 deprecated its calibrators: the same onnxruntime quantisation in TensorRT's form (symmetric int8
activations and weights, only the inputs of weighted ops quantised), calibrated through onnxruntime on the
CPU, then the engine is built from that QDQ network. The decode tail of a network (the ops after its last
convolution or matrix product on every path to an output, e.g. YOLO's box decoding and the concat of boxes in
pixels with scores in 0..1) stays in float: one int8 scale for both would zero every score.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vision_factory.artifacts import Artifact
from vision_factory.backends import Backend, get_backend
from vision_factory.errors import ConfigError
from vision_factory.export_cache import CacheEntry, ExportCache, sha256_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
# More frames than this add little to MinMax ranges and cost calibration time: a longer source is sampled evenly.
CALIBRATION_FRAMES = 100
WEIGHTED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}  # ONNX's
OPENVINO_WEIGHTED_OPS = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"}


def calibration_frames(source: str, limit: int = CALIBRATION_FRAMES) -> list[np.ndarray]:
    """BGR frames from `source`: a folder of images, a video file or a rosbag2 folder (its first image topic),
    at most `limit`, sampled evenly. ConfigError saying what is wrong otherwise."""
    import cv2

    path = Path(source).expanduser()
    if not source:
        raise ConfigError("precision int8 needs calibration_data: a folder of images, a video or a rosbag2 "
                          "folder from the camera the node will see")
    if not path.exists():
        raise ConfigError(f"calibration_data '{path}' does not exist")
    if path.is_dir() and (path / "metadata.yaml").is_file():
        frames = _bag_frames(path)
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        frames = [image for image in (cv2.imread(str(p)) for p in _evenly(files, limit)) if image is not None]
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        video, frames = cv2.VideoCapture(str(path)), []
        while (read := video.read())[0]:
            frames.append(read[1])
        video.release()
    else:
        raise ConfigError(f"calibration_data '{path}' is not a folder of images, a video "
                          f"({', '.join(VIDEO_SUFFIXES)}) or a rosbag2 folder")
    if not frames:
        raise ConfigError(f"calibration_data '{path}' holds no readable frame")
    return _evenly(frames, limit)


def _evenly(items: list, limit: int) -> list:
    if len(items) <= limit:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, limit)]


def _bag_frames(bag: Path) -> list[np.ndarray]:
    if importlib.util.find_spec("rosbags") is None:
        raise ConfigError(f"calibration_data '{bag}' is a rosbag2 folder: reading it needs rosbags (pip install -r "
                          f"requirements/int8-from-bag.txt), or give a folder of images or a video")
    from vision_factory.image_conversion import compressed_to_bgr, image_to_bgr
    from vision_factory.recorded_images import deserialize, read_images

    try:
        messages = read_images(bag)
    except ValueError:
        messages = read_images(bag, compressed=True)
    convert = compressed_to_bgr if messages and messages[0].msgtype.endswith("CompressedImage") else image_to_bgr
    return [convert(message) for message in deserialize(_evenly(messages, CALIBRATION_FRAMES))]


@dataclass
class RecordingSession:
    """A session that keeps a copy of every input it runs: what the model feeds its network."""

    session: Any
    inputs: list[dict[str, np.ndarray]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:  # input_name, input_shape, active
        return getattr(self.session, name)

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.inputs.append({name: np.array(array) for name, array in inputs.items()})
        return self.session.run(inputs)


def after_last_weighted(nodes: list[Any], consumers: Callable[[Any], list[Any]],
                        weighted: Callable[[Any], bool]) -> list[Any]:
    """The nodes (given in topological order) that are not weighted and that no weighted node follows on any
    path to an output: the part of a network that turns features into boxes and scores."""
    feeds_weighted: dict[int, bool] = {}
    for node in reversed(nodes):
        feeds_weighted[id(node)] = any(weighted(n) or feeds_weighted.get(id(n), False) for n in consumers(node))
    return [node for node in nodes if not weighted(node) and not feeds_weighted[id(node)]]


def decode_tail(model: Any) -> list[str]:
    """Names of the decode-tail nodes (after_last_weighted) of an onnx.ModelProto."""
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    tail = after_last_weighted(list(model.graph.node), lambda n: [r for o in n.output for r in readers.get(o, ())],
                               lambda n: n.op_type in WEIGHTED_OPS)
    return [node.name for node in tail]


def input_layer(model: Any) -> list[str]:
    """Names of the weighted nodes of an onnx.ModelProto that read one of its inputs (an image network's
    first convolution). Their activations are the raw pixels, where one int8 scale costs most: kept in fp32,
    YOLOv8n's onnx int8 recovers 96.2% of fp32's detections instead of 93.9% (README, accuracy report)."""
    inputs = {value.name for value in model.graph.input}
    return [node.name for node in model.graph.node if node.op_type in WEIGHTED_OPS and inputs & set(node.input)]


def openvino_decode_tail(model: Any) -> list[str]:
    """Friendly names of the decode-tail operations (after_last_weighted) of an ov.Model, results excluded."""
    def consumers(op: Any) -> list[Any]:
        return [target.get_node() for output in op.outputs() for target in output.get_target_inputs()]

    tail = after_last_weighted(list(model.get_ordered_ops()), consumers,
                               lambda op: op.get_type_name() in OPENVINO_WEIGHTED_OPS)
    return [op.get_friendly_name() for op in tail if op.get_type_name() not in ("Result", "Constant")]


def quantize_onnx(source: Path, dst: Path, inputs: list[dict[str, np.ndarray]], logger: Any,
                  for_tensorrt: bool = False) -> dict[str, str]:
    """Write the int8 QDQ model of the ONNX file `source` to `dst`, calibrated on `inputs` (one dict of input
    arrays a run). Returns what made it, for the cache entry's metadata. `for_tensorrt`: in the form TensorRT's
    explicit quantization takes: symmetric int8 activations (its zero points must be 0) and only the inputs
    of weighted ops quantised, where its int8 kernels are."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = dst.with_name("prepared.onnx")
    try:  # shape inference and graph optimisation first, as onnxruntime recommends
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    except Exception as e:  # noqa: BLE001 - an optimisation, not a requirement
        logger.warning(f"quantisation pre-processing failed ({e}); quantising the network as exported")
        onnx.save(onnx.load(str(source)), str(prepared))
    model = onnx.load(str(prepared))
    for index, node in enumerate(model.graph.node):  # exclusion goes by node name: every node needs one
        node.name = node.name or f"{node.op_type}_{index}"
    onnx.save(model, str(prepared))
    tail, first = decode_tail(model), input_layer(model)

    class Inputs(CalibrationDataReader):
        def __init__(self) -> None:
            self._runs = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._runs, None)

    logger.info(f"quantising {source.name} to int8 on {len(inputs)} calibration runs ({len(tail)} decode ops "
                f"and the input layer's {len(first)} kept in fp32)")
    # TensorRT: Q/DQ on the inputs of weighted ops only, not on their outputs (as NVIDIA's Model Optimizer places
    # them), so it fuses each convolution with its activation and picks their output precision itself.
    form = ({"activation_type": QuantType.QInt8, "op_types_to_quantize": sorted(WEIGHTED_OPS),
             "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True,
                               "OpTypesToExcludeOutputQuantization": sorted(WEIGHTED_OPS)}} if for_tensorrt
            else {"activation_type": QuantType.QUInt8})
    quantize_static(str(prepared), str(dst), Inputs(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=first + tail, **form)
    prepared.unlink()
    quantizer = QUANTIZERS["tensorrt" if for_tensorrt else "onnxruntime"]
    return {"quantizer": quantizer.describe(), "fp32_nodes": ",".join(first + tail)}


def quantize_openvino(source: Path, dst: Path, inputs: list[dict[str, np.ndarray]], logger: Any) -> dict[str, str]:
    """Write the NNCF int8 model of the OpenVINO IR `source` to `dst` (.xml and .bin), calibrated on `inputs`."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)  # not a line per operation into the node's log
    model = ov.Core().read_model(str(source))
    tail = openvino_decode_tail(model)
    logger.info(f"quantising {source.name} to int8 with NNCF on {len(inputs)} calibration runs ({len(tail)} decode "
                f"ops kept in float)")
    quantized = nncf.quantize(model, nncf.Dataset(inputs), preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(inputs), ignored_scope=nncf.IgnoredScope(names=tail, validate=False))
    ov.save_model(quantized, str(dst), compress_to_fp16=False)
    return {"quantizer": QUANTIZERS["openvino"].describe(), "fp32_nodes": ",".join(tail)}


@dataclass(frozen=True)
class Quantizer:
    """How int8 is made for the backends of one runtime: its method, what it writes, its versions."""

    method: str
    artifact_filename: str
    quantize: Callable[[Path, Path, list[dict[str, np.ndarray]], Any], dict[str, str]]
    packages: tuple[str, ...]
    requirements: str  # the requirements/ file that installs them
    # The backend whose fp32 artifacts are calibrated on and quantised ("": the node's own). Its int8 artifact is
    # then converted for the node's backend (TensorRT: the QDQ ONNX file -> an engine).
    calibrated_on: str = ""

    def describe(self) -> str:
        """The method and the versions of the packages that implement it (part of the cache key)."""
        from importlib.metadata import version

        return f"{self.method} ({', '.join(f'{p} {version(p)}' for p in self.packages)})"


# Runtime (a backend's session module) -> its int8 quantiser.
QUANTIZERS = {
    "onnxruntime": Quantizer("onnxruntime static quantisation: QDQ, per-channel int8 weights, uint8 activations, "
                             "MinMax, input layer and decode tail fp32", "model.onnx", quantize_onnx, ("onnxruntime",),
                             "onnx.txt"),
    "openvino": Quantizer("NNCF post-training quantisation: MIXED preset, decode tail in float", "model.xml",
                          quantize_openvino, ("nncf", "openvino"), "openvino-int8.txt"),
    "tensorrt": Quantizer("onnxruntime static quantisation for TensorRT explicit quantization: QDQ, symmetric "
                          "per-channel int8 weights, symmetric int8 activations of weighted ops only, MinMax, input "
                          "layer and decode tail fp32", "model.onnx", partial(quantize_onnx, for_tensorrt=True),
                          ("onnxruntime",), "onnx.txt", calibrated_on="onnx"),
}


def quantizer_of(backend: Backend) -> Quantizer:
    """The quantiser of `backend`'s runtime; ConfigError naming the backends with one otherwise."""
    runtime = backend.runtime.__name__.rsplit(".", 1)[-1].removesuffix("_session")
    if runtime not in QUANTIZERS:
        raise ConfigError(f"precision int8 is not available on the {backend.name} backend (int8 here: onnx, "
                          f"openvino and tensorrt)")
    quantizer = QUANTIZERS[runtime]
    missing = [p for p in quantizer.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ConfigError(f"precision int8 on the {backend.name} backend needs {', '.join(missing)} (pip install -r "
                          f"requirements/{quantizer.requirements})")
    return quantizer


def int8_source(backend: Backend) -> Backend:
    """The backend whose fp32 artifacts `backend`'s int8 ones are made from (quantizer_of(backend).calibrated_on,
    else `backend`); ConfigError as quantizer_of when it has no int8."""
    name = quantizer_of(backend).calibrated_on
    return get_backend(name) if name else backend


def _network_sha256(path: Path) -> str:
    """sha256 of a network file, and of its weights beside it (an OpenVINO IR's .bin)."""
    weights = path.with_suffix(".bin")
    return sha256_path(path) + (sha256_path(weights) if path.suffix == ".xml" and weights.is_file() else "")


def quantized_artifacts(backend: Backend, artifacts: Mapping[str, Artifact], values: Mapping[str, Any],
                        build_model: Callable[[dict[str, Any]], Any], logger: Any,
                        on_export: Callable[[], None] | None = None) -> dict[str, Artifact]:
    """The int8 artifact of each fp32 artifact in `artifacts`, from the cache or quantised now: calibrated on
    the frames of values['calibration_data'], fed through `build_model(sessions)` (the model on fp32
    sessions). Keyed by the fp32 artifact, the calibration data and the quantiser's version."""
    quantizer, calibrated_on = quantizer_of(backend), int8_source(backend)
    source = str(values.get("calibration_data", ""))
    cache = ExportCache(values.get("cache_dir") or None)
    recorded: dict[str, RecordingSession] = {}
    fp32_options = {**calibrated_on.options(values), "precision": "fp32"}  # tensorrt's: onnx on the CPU

    def calibrate() -> dict[str, RecordingSession]:
        if not recorded:  # only when an artifact is missing from the cache
            frames = calibration_frames(source)
            sessions = {role: RecordingSession(calibrated_on.open(artifact, fp32_options, logger))
                        for role, artifact in artifacts.items()}
            model = build_model(sessions)
            logger.info(f"calibrating int8 on {len(frames)} frames of {source}")
            for frame in frames:
                model(frame)
            recorded.update(sessions)
        return recorded

    calibration = Path(source).expanduser()
    if not source or not calibration.exists():
        calibration_frames(source)  # raises the reason
    fields_common = {"backend": backend.name, "precision": "int8", "calibration_sha256": sha256_path(calibration),
                     "calibration_frames": CALIBRATION_FRAMES, "quantizer": quantizer.describe()}
    result = {}
    for role, artifact in artifacts.items():
        fields = {**fields_common, "model": artifact.name, "fp32_sha256": _network_sha256(artifact.path)}

        def build(dst: Path, role: str = role, artifact: Artifact = artifact) -> dict[str, Any]:
            runs = calibrate()[role].inputs
            if not runs:
                raise ConfigError(f"no calibration frame reached the {artifact.name} network ({role}): it cannot "
                                  f"be calibrated")
            return {"model_metadata": artifact.metadata, **quantizer.quantize(artifact.path, dst, runs, logger)}

        entry = cache.get_or_build(fields, quantizer.artifact_filename, build, logger, on_export)
        built = entry.built
        if calibrated_on is not backend:
            entry = _converted(backend, entry, values, cache, logger, on_export)
            built = built or entry.built
        if not built:
            logger.info(f"loaded the cached int8 {backend.name} export {entry.path}")
        result[role] = Artifact(entry.path, dict(entry.metadata["model_metadata"]), exported=built,
                                name=artifact.name)
    return result


def _converted(backend: Backend, int8: CacheEntry, values: Mapping[str, Any], cache: ExportCache, logger: Any,
               on_export: Callable[[], None] | None) -> CacheEntry:
    """The cache entry of `backend`'s conversion of the int8 ONNX file in `int8` (a TensorRT engine), keyed by
    that file and the backend's runtime, as any conversion."""
    options = backend.options(values)
    fields = {"backend": backend.name, "int8_onnx_sha256": sha256_path(int8.path), **backend.runtime_fields(options)}

    def build(dst: Path) -> dict[str, Any]:
        return {"model_metadata": int8.metadata["model_metadata"], **backend.convert(int8.path, dst, options, logger)}

    return cache.get_or_build(fields, backend.artifact_filename, build, logger, on_export)
