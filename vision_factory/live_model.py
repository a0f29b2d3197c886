"""The loaded model a node serves with, rebuilt in the background when a parameter that shapes it changes.

Frames keep flowing through the current model while a new one is exported and loaded; the new one
replaces it in one assignment, so a frame that took `current` finishes on the model it started with
and no frame ever sees a half-built one. A failed rebuild leaves the current model serving.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

from vision_factory.backends.session import BackendError
from vision_factory.errors import ConfigError
from vision_factory.loaded_model import LoadedModel

# States reported in diagnostics.
STARTING, EXPORTING, LOADING, RUNNING, ERROR = "starting", "exporting", "loading", "running", "error"


class LiveModel:
    """`current` is the serving LoadedModel (None until the first build succeeds).

    build(values, frame_hw=..., on_export=callable) makes a LoadedModel; notify() is called from the build
    thread after every build, successful or not, so the owner can act on its own thread (e.g. by a guard
    condition).
    """

    def __init__(self, build: Callable[..., LoadedModel],
                 notify: Callable[[], None], logger: Any):
        self._build, self._notify, self._logger = build, notify, logger
        self._lock = threading.Lock()
        self._pending: tuple[dict[str, Any], tuple[int, int] | None] | None = None
        self._worker: threading.Thread | None = None
        self.current: LoadedModel | None = None
        self.state = STARTING  # of the node: starting, exporting, loading, running or error
        self.building = ""  # "" or what a build under way is doing: loading or exporting
        self.last_error = ""
        self.builds = 0  # finished builds, successful or not

    def request(self, values: Mapping[str, Any], frame_hw: tuple[int, int] | None = None) -> None:
        """Load a model for `values` and frames of frame_hw (None: not known yet) in the background; while
        one is building, the newest request wins."""
        with self._lock:
            self._pending = (dict(values), frame_hw)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="model-build", daemon=True)
                self._worker.start()

    def busy(self) -> bool:
        """Whether a build is under way or queued."""
        with self._lock:
            return self._worker is not None

    def wait(self, stopping: threading.Event | None = None) -> bool:
        """Block until no build is under way or queued (True), or until `stopping` is set (False)."""
        while True:
            with self._lock:
                worker = self._worker
            if worker is None:
                return True
            if stopping is not None and stopping.is_set():
                return False
            worker.join(timeout=None if stopping is None else 0.1)

    def release(self) -> None:
        """Wait for any build, then drop the serving model: its session and memory go with the last frame
        that still uses it."""
        self.wait()
        self.current, self.state, self.last_error = None, STARTING, ""

    def _work(self) -> None:
        while True:
            with self._lock:
                pending, self._pending = self._pending, None
                if pending is None:
                    self._worker = None
                    return
            self._set_building(LOADING)
            values, frame_hw = pending
            try:
                loaded = self._build(values, frame_hw=frame_hw, on_export=lambda: self._set_building(EXPORTING))
            except Exception as e:  # any failure keeps the serving model; it is reported, not raised
                # Our own errors are written for users; others need their type to make sense.
                self.last_error = str(e) if isinstance(e, (ConfigError, BackendError)) else f"{type(e).__name__}: {e}"
                if self.current is None:
                    self.state = ERROR  # the owner reports it: the node cannot start
                else:
                    self._logger.error(f"rebuilding the model session failed: {self.last_error}; "
                                       f"still serving with the previous session")
            else:
                self.current, self.state, self.last_error = loaded, RUNNING, ""
            self.building = ""
            self.builds += 1
            self._notify()

    def _set_building(self, what: str) -> None:
        self.building = what
        if self.current is None:
            self.state = what
