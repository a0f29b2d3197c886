"""The export cache: reuse, atomic writes, detection of damaged entries, one export across processes."""
from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from vision_factory.export_cache import ExportCache, cache_key, default_cache_root

FIELDS = {"model": "yolo", "weights_sha256": "ab" * 32, "backend": "onnx", "onnxruntime": "1.0"}


def writer(calls: list):
    def build(path: Path) -> dict:
        calls.append(path)
        path.write_bytes(b"artifact-" * 1000)
        path.with_name("weights.bin").write_bytes(b"w" * 10)
        return {"exporter": "test 1.0"}
    return build


def test_first_call_builds_then_loads(tmp_path: Path) -> None:
    calls: list = []
    cache = ExportCache(tmp_path)
    first = cache.get_or_build(FIELDS, "model.onnx", writer(calls))
    second = cache.get_or_build(FIELDS, "model.onnx", writer(calls))
    assert first.built and not second.built and len(calls) == 1
    assert first.path == second.path and first.path.read_bytes().startswith(b"artifact-")
    meta = json.loads((first.path.parent / "metadata.json").read_text())
    assert meta["key"] == cache_key(FIELDS) and meta["fields"] == FIELDS and meta["exporter"] == "test 1.0"
    assert set(meta["files"]) == {"model.onnx", "weights.bin"} and meta["export_seconds"] >= 0
    assert [e["key"] for e in cache.entries()] == [meta["key"]]


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "delete_sibling", "bad_metadata"])
def test_a_damaged_entry_is_rebuilt(tmp_path: Path, damage: str) -> None:
    calls: list = []
    cache = ExportCache(tmp_path)
    entry = cache.get_or_build(FIELDS, "model.onnx", writer(calls))
    if damage == "truncate":
        entry.path.write_bytes(entry.path.read_bytes()[:100])
    elif damage == "corrupt":
        data = bytearray(entry.path.read_bytes())
        data[5] ^= 0xFF
        entry.path.write_bytes(bytes(data))
    elif damage == "delete_sibling":
        (entry.path.parent / "weights.bin").unlink()
    else:
        (entry.path.parent / "metadata.json").write_text("{not json")
    again = cache.get_or_build(FIELDS, "model.onnx", writer(calls))
    assert again.built and len(calls) == 2 and again.path.read_bytes().startswith(b"artifact-")


def test_a_failed_export_leaves_nothing_that_looks_valid(tmp_path: Path) -> None:
    def broken(path: Path) -> dict:
        path.write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    cache = ExportCache(tmp_path)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        cache.get_or_build(FIELDS, "model.onnx", broken)
    assert cache.entries() == [] and not list(tmp_path.glob(".tmp-*"))
    assert cache.get_or_build(FIELDS, "model.onnx", writer([])).built


def test_any_key_field_change_gives_a_new_entry(tmp_path: Path) -> None:
    cache = ExportCache(tmp_path)
    paths = {cache.get_or_build({**FIELDS, field: "changed"}, "model.onnx", writer([])).path
             for field in FIELDS}
    assert len(paths) == len(FIELDS)


def test_default_root_follows_ros_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / "vision_factory"
    monkeypatch.delenv("ROS_HOME")
    assert default_cache_root() == Path.home() / ".cache" / "vision_factory"


def _slow_export(root: str, results) -> None:
    def build(path: Path) -> dict:
        time.sleep(1.0)
        path.write_bytes(b"x")
        return {}
    results.put(ExportCache(root).get_or_build(FIELDS, "model.onnx", build).built)


def test_two_processes_on_an_empty_cache_export_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_slow_export, args=(str(tmp_path), results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(results.get(timeout=5) for _ in workers) == [False, True]
