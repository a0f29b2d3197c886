"""Latest-frame processing: inference runs on worker threads, always on the newest frame of each camera.

The subscription callbacks only hand frames over. Each camera has one slot: while the workers are busy, a
newer frame replaces the one waiting in its camera's slot, so a slow model never queues frames and never
publishes stale results; every replaced frame is counted as dropped, per camera. Cameras with a frame
waiting are served in turn (round robin), so a 30 Hz camera cannot starve a 5 Hz one: once a camera's frame
waits, each other camera is served at most once before it. A model that batches takes the frames of several
cameras together, in the same order.

A model that can run several frames at once (a session with several infer requests, LoadedModel.in_flight)
gets that many worker threads: the next frame's pre-processing and inference overlap the current one's.
Results are still delivered in the order their frames were taken, so no answer overtakes a newer one and a
tracker downstream sees its frames in order.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

# What process(items) may return: the second half of its work, run in the order the items were taken.
Delivery = Callable[[], None]


class LatestFrameWorker:
    """Calls process(items) on worker threads with the newest item submitted to each of up to batch_limit()
    slots, the slots in turn; up to in_flight() calls at once. A Delivery that process returns (e.g.
    publishing) runs after every earlier call's, one at a time. submit() never blocks."""

    def __init__(self, process: Callable[[list[Any]], Delivery | None], name: str = "inference",
                 batch_limit: Callable[[], int] = lambda: 1, in_flight: Callable[[], int] = lambda: 1):
        self._process, self._batch_limit, self._in_flight = process, batch_limit, in_flight
        self._name = name
        self._condition = threading.Condition()
        self._waiting: dict[int, Any] = {}  # slot -> its newest item
        self._last_served = -1
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._busy = 0  # threads between taking items and delivering them
        self._taken = self._delivered = 0  # calls begun, calls delivered: a call delivers on its turn
        self.dropped_by_slot: dict[int, int] = {}
        with self._condition:
            self._add_thread()

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
            if self._busy == len(self._threads) < self._in_flight():  # every thread busy; one more may run
                self._add_thread()
            self._condition.notify_all()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the calls in progress, discard the waiting items and end the threads."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)

    def _add_thread(self) -> None:
        thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        thread.start()

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
                while not self._stopping and not (self._waiting and self._busy < self._in_flight()):
                    self._condition.wait()
                if self._stopping:
                    return
                items = self._take(limit)
                turn, self._taken, self._busy = self._taken, self._taken + 1, self._busy + 1
            delivery = None
            try:
                delivery = self._process(items)
            finally:
                self._deliver(turn, delivery)

    def _deliver(self, turn: int, delivery: Delivery | None) -> None:
        """Run `delivery` once every call taken before this one has delivered; then let the next one."""
        with self._condition:
            while self._delivered != turn:
                self._condition.wait()
        try:
            if delivery is not None:
                delivery()
        finally:
            with self._condition:
                self._delivered += 1
                self._busy -= 1
                self._condition.notify_all()
