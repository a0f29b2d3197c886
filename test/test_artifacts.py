"""Weights resolution and the export chain (weights -> artifact a backend opens)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from conftest import CHECKPOINT, INT8_ONNX, asset
from vision_factory.artifacts import prepare_artifact
from vision_factory.backends import get_backend
from vision_factory.errors import ConfigError
from vision_factory.export_cache import ExportCache, sha256_file
from vision_factory.models import yolo

LOG = logging.getLogger("artifacts")


def prepare(weights: Path, backend: str, cache: ExportCache, **backend_options):
    return prepare_artifact(yolo, "yolo", get_backend(backend), weights, {"imgsz": 640}, backend_options, cache, LOG)


def test_resolve_weights(tmp_path: Path) -> None:
    weights = tmp_path / "w.onnx"
    weights.write_bytes(b"x")
    assert yolo.resolve_weights(str(weights), tmp_path / "dl") == weights
    with pytest.raises(ConfigError, match="model file '/no/such/w.onnx' does not exist"):
        yolo.resolve_weights("/no/such/w.onnx", tmp_path / "dl")
    with pytest.raises(ConfigError, match="model file 'w.engine' does not exist"):
        yolo.resolve_weights("w.engine", tmp_path / "dl")


def test_a_model_name_is_downloaded_by_ultralytics_or_refused_clearly_offline(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    try:
        path = yolo.resolve_weights("yolo11n.pt", tmp_path / "dl")
    except ConfigError as e:  # no internet here: the real download code ran and failed
        assert "model 'yolo11n.pt' is not a file and could not be downloaded" in str(e)
    else:
        assert path.parent == tmp_path / "dl" and path.stat().st_size > 1_000_000


def test_an_onnx_file_is_used_as_it_is_by_the_onnx_backend(tmp_path: Path) -> None:
    cache = ExportCache(tmp_path)
    artifact = prepare(asset(INT8_ONNX), "onnx", cache, execution_provider="cpu")
    assert artifact.path == INT8_ONNX and not artifact.exported and cache.entries() == []
    assert yolo.parse_labels(artifact.metadata)[:2] == ("person", "bicycle")


def test_a_checkpoint_is_exported_once_per_backend_and_keyed_by_versions(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    cache = ExportCache(tmp_path)
    first = prepare(asset(CHECKPOINT), "onnx", cache)
    again = prepare(CHECKPOINT, "onnx", cache)
    assert first.exported and not again.exported and first.path == again.path
    (entry,) = cache.entries()
    assert entry["fields"]["weights_sha256"] == sha256_file(CHECKPOINT)
    assert {"onnxruntime", "torch", "ultralytics", "backend", "options"} <= set(entry["fields"])
    assert entry["fields"]["options"] == {"imgsz": 640} and "names" in entry["model_metadata"]
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["metadata.json", "model.onnx"]


def test_checkpoint_backends_refuse_onnx_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the cuda backend runs PyTorch checkpoints \\(.pt\\)"):
        prepare(asset(INT8_ONNX), "cuda", ExportCache(tmp_path))
