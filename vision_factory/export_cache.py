"""The on-disk cache of exported artifacts (ONNX files, OpenVINO IR, TensorRT engines).

Layout: <root>/<key>/ holds the artifact's files and metadata.json. An entry is written into a
temporary folder and renamed into place only when complete, so a killed export never leaves an entry
that looks valid; on load every file's size and sha256 are checked against the metadata. Exports of
the same key are serialised across processes with an flock, which the kernel drops if a process dies.
"""
from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

METADATA = "metadata.json"
PROGRESS_PERIOD_S = 10.0  # a long export logs its elapsed time at least this often
_log = logging.getLogger(__name__)
_UNWRITABLE: dict[Path, Path] = {}  # cache root that cannot be written -> this process's stand-in folder


def default_cache_root() -> Path:
    """$ROS_HOME/vision_factory if ROS_HOME is set, else ~/.cache/vision_factory."""
    ros_home = os.environ.get("ROS_HOME")
    if ros_home:
        return Path(ros_home).expanduser() / "vision_factory"
    return Path.home() / ".cache" / "vision_factory"


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (their relative paths and contents, in sorted order)."""
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(fields: Mapping[str, Any]) -> str:
    """A stable key for everything an artifact depends on (weights hash, backend, versions, ...)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheEntry:
    """A complete, verified artifact: `path` is its main file; `built` is True if this call exported it."""

    path: Path
    metadata: dict[str, Any]
    built: bool


class ExportCache:
    """Exported artifacts keyed by what they were made from."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root).expanduser() if root else default_cache_root()

    def get_or_build(self, fields: Mapping[str, Any], filename: str,
                     build: Callable[[Path], Mapping[str, Any]],
                     logger: logging.Logger | Any = _log,
                     on_build: Callable[[], None] | None = None) -> CacheEntry:
        """The entry for `fields`; if missing or invalid, `build(path)` writes `path` (and any sibling
        files it needs) and returns extra metadata to record, e.g. the exporter's versions.

        `on_build()` is called when an export starts (also when waiting for another process's export)."""
        key = cache_key(fields)
        entry_dir = self.root / key
        entry, problem = self._load(entry_dir, key, filename)
        if entry is not None:
            return entry
        if problem:
            logger.warning(f"cache entry {entry_dir} is invalid: {problem}; rebuilding it")
        if on_build is not None:
            on_build()
        root = self._writable_root(logger)
        if root != self.root:  # exports go to a temporary folder for this process only
            return ExportCache(root).get_or_build(fields, filename, build, logger)
        with self._lock(key, logger):
            entry, _ = self._load(entry_dir, key, filename)  # another process may have built it
            if entry is not None:
                return entry
            return self._build(entry_dir, key, fields, filename, build, logger)

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of every complete entry, with "path" (its folder) and "bytes" (its size) added."""
        found = []
        for meta_path in sorted(self.root.glob(f"*/{METADATA}")):
            try:
                metadata = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            sizes = [p.stat().st_size for p in meta_path.parent.iterdir() if p.is_file()]
            found.append({**metadata, "path": str(meta_path.parent), "bytes": sum(sizes)})
        return found

    def clear(self) -> int:
        """Remove every entry, unfinished export and lock file; the number of entries removed."""
        removed = len(self.entries())
        if self.root.exists():
            for path in self.root.iterdir():
                if path.is_dir() and (path.name == ".locks" or path.name.startswith(".tmp-")
                                      or (path / METADATA).exists()):
                    shutil.rmtree(path, ignore_errors=True)
        return removed

    def _writable_root(self, logger: Any) -> Path:
        """self.root if an export can be written there; else a temporary folder, said once per process."""
        if self.root in _UNWRITABLE:
            return _UNWRITABLE[self.root]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                return self.root
        except OSError as e:
            stand_in = _uncached_folder()
            _UNWRITABLE[self.root] = stand_in
            logger.warning(f"the cache folder {self.root} is not writable ({e.strerror}): exporting into "
                           f"{stand_in} for this run only, nothing is cached")
            return stand_in

    @contextmanager
    def _lock(self, key: str, logger: Any) -> Iterator[None]:
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{key}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                with _progress(logger, f"waiting for another process exporting {key}"):
                    fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _load(entry_dir: Path, key: str, filename: str) -> tuple[CacheEntry | None, str]:
        """The verified entry, or None and what is wrong with it ('' when there is none)."""
        meta_path = entry_dir / METADATA
        if not entry_dir.exists():
            return None, ""
        problem = ""
        try:
            metadata = json.loads(meta_path.read_text())
            if metadata.get("key") != key or metadata.get("artifact") != filename:
                problem = "its metadata does not match"
            for name, expected in metadata.get("files", {}).items():
                path = entry_dir / name
                if not path.is_file() or path.stat().st_size != expected["size"]:
                    problem = f"{name} is missing or truncated"
                elif sha256_file(path) != expected["sha256"]:
                    problem = f"{name} is corrupt (checksum mismatch)"
                if problem:
                    break
        except (OSError, ValueError, KeyError, TypeError) as e:
            problem = f"its metadata is unreadable ({e})"
        if problem:
            return None, problem
        return CacheEntry(entry_dir / filename, metadata, built=False), ""

    def _build(self, entry_dir: Path, key: str, fields: Mapping[str, Any], filename: str,
               build: Callable[[Path], Mapping[str, Any]], logger: Any) -> CacheEntry:
        # Under this key's lock no other live process exports it: any .tmp folder of the key is what an
        # export killed half-way left behind.
        for stale in self.root.glob(f".tmp-{key}-*"):
            logger.info(f"removing {stale.name}, left by an export that did not finish")
            shutil.rmtree(stale, ignore_errors=True)
        tmp_dir = self.root / f".tmp-{key}-{os.getpid()}"
        tmp_dir.mkdir(parents=True)
        started = time.monotonic()
        try:
            with _progress(logger, f"exporting {filename} into {entry_dir}"):
                extra = dict(build(tmp_dir / filename))
            files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
                     for p in sorted(tmp_dir.iterdir()) if p.is_file()}
            if filename not in files:
                raise RuntimeError(f"export finished without writing {filename}")
            metadata = {
                "key": key, "fields": dict(fields), "artifact": filename, "files": files,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "export_seconds": round(time.monotonic() - started, 3), **extra,
            }
            (tmp_dir / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True))
            shutil.rmtree(entry_dir, ignore_errors=True)  # an invalid entry, under our lock
            os.replace(tmp_dir, entry_dir)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        logger.info(f"exported {filename} into {entry_dir} in {metadata['export_seconds']:.1f} s")
        return CacheEntry(entry_dir / filename, metadata, built=True)


def _uncached_folder() -> Path:
    """A temporary folder for this process's exports, removed when it exits; also removes the folders of
    processes that died without that chance (SIGKILL)."""
    prefix = "vision_factory-uncached-"
    for old in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@contextmanager
def _progress(logger: Any, what: str) -> Iterator[None]:
    """Log `what` with the elapsed time every PROGRESS_PERIOD_S until the block ends: never a silent wait."""
    done = threading.Event()
    started = time.monotonic()

    def report() -> None:
        while not done.wait(PROGRESS_PERIOD_S):
            logger.info(f"still {what}: {time.monotonic() - started:.0f} s elapsed")

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        yield
    finally:
        done.set()
        reporter.join()
