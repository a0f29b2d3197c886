"""The MLServer runtime the remote backend's test server runs (oip_server.py starts it): one ONNX file with
onnxruntime on the CPU. MLServer ships no ONNX runtime of its own.

It loads `parameters.uri`, declares the file's tensors as the model's metadata (from onnxruntime's view of it,
not vision_factory's) and, when the server's environment names a header in OIP_TEST_REQUIRED_HEADER
("name: value"), refuses requests without it.
"""
from __future__ import annotations

import os

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor

_DATATYPES = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL"}


class OnnxRuntimeModel(MLModel):
    """An MLServer runtime running one ONNX file with onnxruntime on the CPU."""

    async def load(self) -> bool:
        import onnxruntime

        self._session = onnxruntime.InferenceSession(str(self._settings.parameters.uri),
                                                     providers=["CPUExecutionProvider"])

        def tensors(values: list) -> list[MetadataTensor]:
            return [MetadataTensor(name=v.name, datatype=_DATATYPES[v.type],
                                   shape=[d if isinstance(d, int) else -1 for d in v.shape]) for v in values]

        self._settings.inputs = tensors(self._session.get_inputs())
        self._settings.outputs = tensors(self._session.get_outputs())
        name, _, value = os.environ.get("OIP_TEST_REQUIRED_HEADER", "").partition(":")
        self._required = (name.strip().lower(), value.strip()) if name else None
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if self._required:
            headers = payload.parameters.headers if payload.parameters and payload.parameters.headers else {}
            if {k.lower(): v for k, v in headers.items()}.get(self._required[0]) != self._required[1]:
                raise MLServerError(f"missing or wrong {self._required[0]} header", status_code=401)
        outputs = self._session.run(None, {i.name: NumpyCodec.decode_input(i) for i in payload.inputs})
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=[
            NumpyCodec.encode_output(v.name, array) for v, array in zip(self._session.get_outputs(), outputs)])
