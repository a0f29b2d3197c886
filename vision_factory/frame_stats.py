"""Input and output rates, dropped frames and latency percentiles over a sliding window."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import numpy as np

WINDOW_S = 5.0


class FrameStats:
    """Thread-safe counters the node updates per frame and diagnostics reads once a second.

    latency: frame received -> result published (what this node adds); stamp latency: the input header
    stamp -> published (end to end, meaningful when the camera's clock and this node's agree).
    """

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self._window_s, self._clock = window_s, clock
        self._lock = threading.Lock()
        self._received: deque[tuple[float]] = deque()
        self._published: deque[tuple[float, float, float, float]] = deque()
        self._rejected: deque[tuple[float, str]] = deque()
        self._lost: deque[tuple[float, int]] = deque()
        self.received_total = self.published_total = self.rejected_total = self.lost_total = 0
        self.started = clock()
        self.last_input: float | None = None

    def received(self) -> None:
        now = self._clock()
        with self._lock:
            self._received.append((now,))
            self.received_total += 1
            self.last_input = now
            self._trim(now)

    def published(self, latency_s: float, inference_s: float, stamp_latency_s: float) -> None:
        now = self._clock()
        with self._lock:
            self._published.append((now, latency_s, inference_s, stamp_latency_s))
            self.published_total += 1
            self._trim(now)

    def rejected(self, reason: str) -> None:
        """A frame that could not be used (bad input, failed inference), and why."""
        now = self._clock()
        with self._lock:
            self._rejected.append((now, reason))
            self.rejected_total += 1
            self._trim(now)

    def lost(self, count: int) -> None:
        """Frames the middleware reported lost on the way (never received)."""
        now = self._clock()
        with self._lock:
            self._lost.append((now, count))
            self.lost_total += count
            self._trim(now)

    def snapshot(self) -> dict[str, float | int | None]:
        """Rates in Hz, latencies in ms (p50 / p99 over the window), totals, frames received and rejected
        within the window with the latest rejection's reason, and seconds since the last input (or since
        start, when none came yet)."""
        now = self._clock()
        with self._lock:
            self._trim(now)
            published = np.array([p[1:] for p in self._published]).reshape(-1, 3) * 1000.0
            received = len(self._received)
            totals = self.received_total, self.published_total, self.rejected_total
            rejected = len(self._rejected)
            lost = sum(count for _, count in self._lost), self.lost_total
            last_rejection = self._rejected[-1][1] if self._rejected else ""
            since_input = now - (self.started if self.last_input is None else self.last_input)

        def pct(column: int, q: float) -> float | None:
            return round(float(np.percentile(published[:, column], q)), 1) if len(published) else None

        return {
            "input_hz": round(received / self._window_s, 2), "output_hz": round(len(published) / self._window_s, 2),
            "received_total": totals[0], "published_total": totals[1], "rejected_total": totals[2],
            "latency_p50_ms": pct(0, 50), "latency_p99_ms": pct(0, 99),
            "inference_p50_ms": pct(1, 50), "inference_p99_ms": pct(1, 99),
            "stamp_latency_p50_ms": pct(2, 50), "stamp_latency_p99_ms": pct(2, 99),
            "received_recent": received, "rejected_recent": rejected, "last_rejection": last_rejection,
            "lost_recent": lost[0], "lost_total": lost[1],
            "seconds_since_input": round(since_input, 2),
        }

    def _trim(self, now: float) -> None:
        for events in (self._received, self._published, self._rejected, self._lost):  # each entry: (time, ...)
            while events and now - events[0][0] > self._window_s:
                events.popleft()
