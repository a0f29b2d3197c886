"""Latest-frame processing: inference runs on a worker thread, always on the newest frame.

The subscription callback only hands the frame over. While the worker is busy, a newer frame replaces
the one waiting, so a slow model never queues frames and never publishes stale results; every
replaced frame is counted as dropped.
"""
from __future__ import annotations

import threading
from typing import Any, Callable


class LatestFrameWorker:
    """Calls process(item) on its own thread for the newest submitted item; submit() never blocks."""

    def __init__(self, process: Callable[[Any], None], name: str = "inference"):
        self._process = process
        self._condition = threading.Condition()
        self._waiting: Any = None
        self._has_waiting = False
        self._stopping = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        """Queue `item` as the next one to process, replacing (and counting) any item still waiting."""
        with self._condition:
            if self._has_waiting:
                self.dropped += 1
            self._waiting, self._has_waiting = item, True
            self._condition.notify()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the item in progress, discard the waiting one and end the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._has_waiting and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                item, self._waiting, self._has_waiting = self._waiting, None, False
            self._process(item)
