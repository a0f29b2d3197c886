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
from vision_factory.loaded_model import model_options
from vision_factory.manifest import load_manifest
from vision_factory.models import yolo, yolo_weights

LOG = logging.getLogger("artifacts")
# What a yolo node with default parameters exports with (imgsz, max_batch_size).
YOLO_OPTIONS = model_options(load_manifest("yolo"), {p.name: p.default for p in load_manifest("yolo").parameters})


def prepare(weights: Path, backend: str, cache: ExportCache, **backend_options):
    return prepare_artifact(yolo_weights, "yolo", get_backend(backend), weights, YOLO_OPTIONS, backend_options, cache,
                            LOG)


def test_resolve_weights(tmp_path: Path) -> None:
    weights = tmp_path / "w.onnx"
    weights.write_bytes(b"x")
    assert yolo_weights.resolve_weights(str(weights), tmp_path / "dl") == weights
    with pytest.raises(ConfigError, match="model file '/no/such/w.onnx' does not exist"):
        yolo_weights.resolve_weights("/no/such/w.onnx", tmp_path / "dl")
    with pytest.raises(ConfigError, match="model file 'w.engine' does not exist"):
        yolo_weights.resolve_weights("w.engine", tmp_path / "dl")


def test_a_model_name_is_downloaded_by_ultralytics_or_refused_clearly_offline(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    try:
        path = yolo_weights.resolve_weights("yolo11n.pt", tmp_path / "dl")
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
    assert entry["fields"]["options"] == {"imgsz": 640, "max_batch_size": 1} and "names" in entry["model_metadata"]
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["metadata.json", "model.onnx"]


def test_checkpoint_backends_refuse_onnx_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the cuda backend runs PyTorch weights \\(a checkpoint \\(.pt\\)\\)"):
        prepare(asset(INT8_ONNX), "cuda", ExportCache(tmp_path))


def test_new_content_at_the_same_path_gets_a_new_entry(tmp_path: Path) -> None:
    import shutil

    from conftest import FP32_ONNX

    weights = tmp_path / "weights" / "model.onnx"
    weights.parent.mkdir()
    cache = ExportCache(tmp_path / "cache")
    shutil.copyfile(asset(INT8_ONNX), weights)
    first = prepare(weights, "openvino", cache, device="CPU", precision="fp32")
    shutil.copyfile(asset(FP32_ONNX), weights)  # the user replaced the file in place
    second = prepare(weights, "openvino", cache, device="CPU", precision="fp32")
    assert first.exported and second.exported and first.path != second.path
    assert len({e["fields"]["weights_sha256"] for e in cache.entries()}) == 2


def test_cache_warm_builds_what_the_node_loads(tmp_path: Path) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "vision_factory", "cache", "warm", "--model", "yolo", "--backend", "openvino",
               "--weights", str(asset(INT8_ONNX)), "--cache-dir", str(tmp_path), "-p", "precision=bf16"]
    first = subprocess.run(command, capture_output=True, text=True)
    second = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == second.returncode == 0, first.stderr
    assert "exported: " in first.stdout and "already cached: " in second.stdout
    # the node, with the same parameters, finds that entry
    artifact = prepare(INT8_ONNX, "openvino", ExportCache(tmp_path), device="CPU", precision="bf16")
    assert not artifact.exported and str(artifact.path) in first.stdout
    listing = subprocess.run([sys.executable, "-m", "vision_factory", "cache", "list", "--cache-dir", str(tmp_path)],
                             capture_output=True, text=True).stdout
    assert listing.startswith("1 entries") and "yolo x openvino  model.xml" in listing and "openvino 20" in listing
    refused = subprocess.run(command[:-2] + ["-p", "precision=fp64"], capture_output=True, text=True)
    assert refused.returncode == 2 and "parameter 'precision': 'fp64' is not one of" in refused.stderr
    misspelt = subprocess.run(command[:-2] + ["-p", "precison=bf16"], capture_output=True, text=True)
    assert misspelt.returncode == 2 and "unknown parameter 'precison' (known: " in misspelt.stderr
