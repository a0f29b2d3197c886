"""A model file is data: no path through vision_factory unpickles code from it."""
from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import pytest

from conftest import CHECKPOINT, asset
from vision_factory.errors import ConfigError
from vision_factory.loaded_model import load_default_model

torch = pytest.importorskip("torch", reason="checkpoints are PyTorch files")
pytest.importorskip("ultralytics", reason="checkpoints are loaded by ultralytics")


class Payload:
    """Unpickling this creates `marker`: harmless, but proof that the file's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


@pytest.fixture
def hostile_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A torch.save archive whose model entry runs code when unpickled, and the file that code creates."""
    marker = tmp_path / "code-ran"
    weights = tmp_path / "hostile.pt"
    torch.save({"model": Payload(marker)}, weights)
    torch.load(weights, weights_only=False)  # unrestricted loading does run it: the payload is live
    assert marker.exists()
    marker.unlink()
    return weights, marker


@pytest.mark.parametrize("backend", ["onnx", "openvino", "cuda"])
def test_a_checkpoint_that_would_run_code_is_refused(hostile_checkpoint: tuple[Path, Path], tmp_path: Path,
                                                       backend: str) -> None:
    weights, marker = hostile_checkpoint
    with pytest.raises(ConfigError, match="refused to load .*hostile.pt.: the file references types outside"):
        load_default_model("yolo", backend, weights, tmp_path / "cache")
    assert not marker.exists()


def test_a_pickle_named_onnx_is_refused_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    weights = tmp_path / "model.onnx"
    weights.write_bytes(pickle.dumps(Payload(marker)))
    for backend in ("onnx", "openvino"):
        with pytest.raises(ConfigError, match="is not a readable ONNX model"):
            load_default_model("yolo", backend, weights, tmp_path / "cache")
    assert not marker.exists()


def test_a_real_checkpoint_loads_under_restricted_loading(tmp_path: Path) -> None:
    from vision_factory.models.yolo_weights import load_checkpoint

    model = load_checkpoint(asset(CHECKPOINT))
    assert model.names[0] == "person"
