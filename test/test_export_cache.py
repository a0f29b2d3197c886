"""The export cache: reuse, atomic writes, detection of damaged entries, one export across processes."""
from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
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
def test_a_damaged_entry_is_rebuilt(tmp_path: Path, damage: str, caplog) -> None:
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
    caplog.set_level(logging.INFO)
    again = cache.get_or_build(FIELDS, "model.onnx", writer(calls))
    assert again.built and len(calls) == 2 and again.path.read_bytes().startswith(b"artifact-")
    assert len([r for r in caplog.records if "is invalid" in r.message]) == 1  # said once, not per check


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


def test_long_exports_log_their_elapsed_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    import logging

    from vision_factory import export_cache

    monkeypatch.setattr(export_cache, "PROGRESS_PERIOD_S", 0.05)
    caplog.set_level(logging.INFO)
    started: list = []

    def slow(path: Path) -> dict:
        time.sleep(0.3)
        path.write_bytes(b"x")
        return {}

    ExportCache(tmp_path).get_or_build(FIELDS, "model.onnx", slow, logging.getLogger("t"),
                                       on_build=lambda: started.append(1))
    assert started == [1]
    progress = [r.message for r in caplog.records if r.message.startswith("still exporting model.onnx")]
    assert len(progress) >= 3 and progress[-1].endswith("s elapsed")


def _hold_lock_forever(root: str, key: str, ready) -> None:
    import fcntl

    lock_dir = Path(root) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    handle = open(lock_dir / f"{key}.lock", "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    ready.set()
    time.sleep(600)


def test_a_lock_left_by_a_killed_exporter_does_not_block(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_lock_forever, args=(str(tmp_path), cache_key(FIELDS), ready))
    holder.start()
    assert ready.wait(30)
    holder.kill()  # SIGKILL mid-export: no chance to clean up
    holder.join(10)
    started = time.monotonic()
    entry = ExportCache(tmp_path).get_or_build(FIELDS, "model.onnx", writer([]))
    assert entry.built and time.monotonic() - started < 5


def test_list_and_clear(tmp_path: Path) -> None:
    cache = ExportCache(tmp_path)
    cache.get_or_build(FIELDS, "model.onnx", writer([]))
    cache.get_or_build({**FIELDS, "backend": "openvino"}, "model.onnx", writer([]))
    (tmp_path / ".tmp-deadbeef-1").mkdir()
    entries = cache.entries()
    assert len(entries) == 2 and all(e["bytes"] > 9000 and Path(e["path"]).is_dir() for e in entries)
    (tmp_path / "unrelated").mkdir()
    assert cache.clear() == 2
    assert cache.entries() == [] and sorted(p.name for p in tmp_path.iterdir()) == ["unrelated"]


def test_an_unwritable_cache_runs_uncached_and_says_so_once(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = ExportCache(blocker / "cache")  # cannot be created: its parent is a file
    calls: list = []
    first = cache.get_or_build(FIELDS, "model.onnx", writer(calls))
    second = cache.get_or_build(FIELDS, "model.onnx", writer(calls))
    assert first.built and first.path.is_file() and not str(first.path).startswith(str(tmp_path))
    assert not second.built and second.path == first.path  # the stand-in serves this process
    warnings = [r.message for r in caplog.records if "is not writable" in r.message]
    assert len(warnings) == 1 and "nothing is cached" in warnings[0]


def test_loading_an_entry_writes_nothing(tmp_path: Path) -> None:
    """So a cache warmed elsewhere can be shipped on a read-only filesystem."""
    cache = ExportCache(tmp_path / "cache")
    built = cache.get_or_build(FIELDS, "model.onnx", writer([]))
    shutil.rmtree(tmp_path / "cache" / ".locks")
    before = sorted(p for p in (tmp_path / "cache").rglob("*"))
    calls: list = []
    loaded = ExportCache(tmp_path / "cache").get_or_build(FIELDS, "model.onnx", writer(calls))
    assert loaded.path == built.path and calls == []
    assert sorted(p for p in (tmp_path / "cache").rglob("*")) == before


_UNCACHED_RUN = """
import sys
from pathlib import Path
from vision_factory.export_cache import ExportCache
entry = ExportCache(Path(sys.argv[1])).get_or_build({"model": "m"}, "model.onnx", lambda p: {"bytes": p.write_bytes(b"x")})
print(entry.path)
"""


def test_an_uncached_export_is_removed_when_the_process_exits(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, "-c", _UNCACHED_RUN, str(blocker / "cache")], capture_output=True,
                            text=True, check=True)
    exported = Path(result.stdout.strip())
    assert exported.name == "model.onnx" and str(exported).startswith(tempfile.gettempdir())
    assert not exported.parent.parent.exists()  # the process's stand-in folder went with it


def test_a_killed_process_uncached_folder_is_removed_by_the_next(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    left = Path(tempfile.gettempdir()) / f"vision_factory-uncached-{dead}-test"
    (left / "key").mkdir(parents=True)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    subprocess.run([sys.executable, "-c", _UNCACHED_RUN, str(blocker / "cache")], check=True, capture_output=True)
    assert not left.exists()
