"""A network's tensor signature, and the model repository an inference server serves it from.

The layout is Triton Inference Server's (<repository>/<name>/config.pbtxt and <name>/<version>/model.onnx),
which Triton reads unchanged; servers that speak the same Open Inference Protocol (KServe, OpenVINO Model
Server, MLServer) serve the same ONNX file with their own settings. The remote backend checks a served
model against the signature of the node's own export, so the names here are used by both.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from vision_factory.errors import ConfigError

# What a model name on a server may hold (a folder name in every repository layout).
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Triton's data_type names are the protocol's datatypes with TYPE_ in front, except BYTES.
_TRITON_TYPES = {"BYTES": "TYPE_STRING"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a network: its name, Open Inference Protocol datatype (FP32, INT64, ...) and
    shape, -1 where a dimension is dynamic."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name} {self.datatype} [{','.join(str(d) for d in self.shape)}]"

    def agrees_with(self, other: TensorSpec) -> bool:
        """Same name, datatype and rank, and equal sizes wherever both are fixed."""
        return (self.name, self.datatype, len(self.shape)) == (other.name, other.datatype, len(other.shape)) and all(
            a == b or -1 in (a, b) for a, b in zip(self.shape, other.shape))


@dataclass(frozen=True)
class Signature:
    """A network's inputs and outputs, in its declared order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def batchable(self) -> bool:
        """Whether every tensor's first dimension is a dynamic batch axis (what a server needs to batch
        requests together)."""
        return all(t.shape and t.shape[0] == -1 for t in (*self.inputs, *self.outputs))


def onnx_signature(path: Path) -> Signature:
    """The inputs (weights excluded) and outputs of an ONNX file."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype
    from tritonclient.utils import np_to_triton_dtype

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {initializer.name for initializer in graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        return TensorSpec(value.name, np_to_triton_dtype(tensor_dtype_to_np_dtype(tensor.elem_type)), shape)

    return Signature(tuple(spec(v) for v in graph.input if v.name not in weights),
                     tuple(spec(v) for v in graph.output))


def server_model_name(artifact_name: str, model_name: str = "") -> str:
    """The name a network is served under: `model_name` (default: the model's, e.g. "yolo") for a model's
    main weights; "<that>_<weights parameter>" for its other weights (artifact_name "rtmpose.detector_model"
    -> "rtmpose_detector_model")."""
    model, _, role = artifact_name.partition(".")
    base = model_name or model
    return f"{base}_{role}" if role else base


def name_problem(name: str) -> str:
    """'' if `name` can name a model on a server, else why not."""
    return "" if _SERVER_NAME.match(name) else f"'{name}' is not a model name (letters, digits, _ . -)"


def triton_config(name: str, signature: Signature, max_batch_size: int, instances: int, kind: str,
                  source: str) -> str:
    """Triton's config.pbtxt for an ONNX network: dynamic batching up to max_batch_size when every tensor has a
    dynamic batch axis (else max_batch_size 0 and full shapes), `instances` copies of kind auto, cpu or gpu."""
    batching = max_batch_size > 0 and signature.batchable()

    def tensors(specs: tuple[TensorSpec, ...]) -> str:
        blocks = []
        for spec in specs:
            dims = ", ".join(str(d) for d in (spec.shape[1:] if batching else spec.shape))
            datatype = _TRITON_TYPES.get(spec.datatype, "TYPE_" + spec.datatype)
            blocks.append(f'  {{\n    name: "{spec.name}"\n    data_type: {datatype}\n    dims: [ {dims} ]\n  }}')
        return ",\n".join(blocks)

    lines = [f"# Written by vision-factory export from {source}.",
             f'name: "{name}"', 'platform: "onnxruntime_onnx"']
    if batching:
        lines += [f"max_batch_size: {max_batch_size}"]
    else:
        lines += ["# The network has a fixed batch size: the server cannot batch requests together.",
                  "max_batch_size: 0"]
    lines += [f"input [\n{tensors(signature.inputs)}\n]", f"output [\n{tensors(signature.outputs)}\n]",
              f"instance_group [ {{ count: {instances} kind: KIND_{kind.upper()} }} ]"]
    if batching:
        lines += ["dynamic_batching { }"]
    return "\n".join(lines) + "\n"


def write_model(repository: Path, name: str, version: int, onnx_path: Path, max_batch_size: int = 8,
                instances: int = 1, kind: str = "auto", source: str = "") -> Path:
    """Write `onnx_path` as version `version` of model `name` into the repository with its config.pbtxt;
    returns the model's folder. An existing version of that name is replaced."""
    problem = name_problem(name)
    if problem:
        raise ConfigError(problem)
    folder = repository / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, folder / str(version) / "model.onnx")
    config = triton_config(name, onnx_signature(onnx_path), max_batch_size, instances, kind,
                           source or onnx_path.name)
    (folder / "config.pbtxt").write_text(config)
    return folder
