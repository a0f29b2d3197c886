"""Latest-frame processing: inference runs on a worker thread, always on the newest frame of each camera.

The subscription callbacks only hand frames over. Each camera has one slot: while the worker is busy, a
newer frame replaces the one waiting in its camera's slot, so a slow model never queues frames and never
publishes stale results; every replaced frame is counted as dropped, per camera. Cameras with a frame
waiting are served in turn (round robin), so a 30 Hz camera cannot starve a 5 Hz one: once a camera's frame
waits, each other camera is served at most once before it. A model that batches takes the frames of several
cameras together, in the same order.
"""
from __future__ import annotations

import threading
from typing import Any, Callable


class LatestFrameWorker:
    """Calls process(items) on its own thread with the newest item submitted to each of up to batch_limit()
    slots, the slots in turn; submit() never blocks."""

    def __init__(self, process: Callable[[list[Any]], None], name: str = "inference",
                 batch_limit: Callable[[], int] = lambda: 1):
        self._process, self._batch_limit = process, batch_limit
        self._condition = threading.Condition()
        self._waiting: dict[int, Any] = {}  # slot -> its newest item
        self._last_served = -1
        self._stopping = False
        self.dropped_by_slot: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Items replaced before they were processed, all slots together."""
        with self._condition:  # submit() may add a slot meanwhile
            return sum(self.dropped_by_slot.values())

    def submit(self, item: Any, slot: int = 0) -> None:
        """Queue `item` as the next one of `slot`, replacing (and counting) any item of that slot still
        waiting."""
        with self._condition:
            if slot in self._waiting:
                self.dropped_by_slot[slot] = self.dropped_by_slot.get(slot, 0) + 1
            self._waiting[slot] = item
            self._condition.notify()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the item in progress, discard the waiting ones and end the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _take(self, limit: int) -> list[Any]:
        """The waiting items of up to `limit` slots, from the first slot after the last one served (wrapping
        around)."""
        slots = sorted(self._waiting)
        first = next((i for i, slot in enumerate(slots) if slot > self._last_served), 0)
        chosen = (slots[first:] + slots[:first])[:max(1, limit)]
        self._last_served = chosen[-1]
        return [self._waiting.pop(slot) for slot in chosen]

    def _run(self) -> None:
        while True:
            limit = self._batch_limit()  # asked outside the lock: it may look at the serving model
            with self._condition:
                while not self._waiting and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                items = self._take(limit)
            self._process(items)
