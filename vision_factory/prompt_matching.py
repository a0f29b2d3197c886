"""Pairing frames with the prompt messages made from them (a detector's detections), by header stamp.

A detector answers a frame some time after it arrived, so the recent frames are kept: a prompt message
finds its frame by stamp among them. One that arrives before its frame (another path through the network)
waits for it. A prompt whose frame is no longer kept, or never came, is counted as unmatched, never dropped
silently.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable


class StampMatcher:
    """Keeps the last `frames` frames by stamp (any ordered key, e.g. (sec, nanosec)) and as many prompts
    waiting for their frame; add_frame and add_prompt return what a new arrival completes."""

    def __init__(self, frames: int):
        self._capacity = max(1, frames)
        self._frames: OrderedDict[Hashable, Any] = OrderedDict()
        self._waiting: OrderedDict[Hashable, Any] = OrderedDict()  # prompts that came before their frame
        self._lock = threading.Lock()
        self.matched = 0
        self.unmatched = 0

    def add_frame(self, stamp: Hashable, frame: Any) -> Any | None:
        """Keep a frame; returns the prompt that was waiting for it, if one was."""
        with self._lock:
            self._frames[stamp] = frame
            self._frames.move_to_end(stamp)
            while len(self._frames) > self._capacity:
                self._frames.popitem(last=False)
            prompt = self._waiting.pop(stamp, None)
            if prompt is not None:
                self.matched += 1
            # A prompt waiting for a frame older than every kept frame has missed it.
            oldest = next(iter(self._frames))
            for waiting in [key for key in self._waiting if key < oldest]:
                del self._waiting[waiting]
                self.unmatched += 1
            return prompt

    def add_prompt(self, stamp: Hashable, prompt: Any) -> Any | None:
        """The kept frame of the prompt's stamp; None when there is none yet (the prompt waits, if its frame
        may still come) or any more (counted as unmatched)."""
        with self._lock:
            frame = self._frames.get(stamp)
            if frame is not None:
                self.matched += 1
                return frame
            if self._frames and stamp <= next(reversed(self._frames)):
                self.unmatched += 1  # newer frames came: its frame was lost, or is no longer kept
                return None
            self._waiting[stamp] = prompt
            while len(self._waiting) > self._capacity:
                self._waiting.popitem(last=False)
                self.unmatched += 1
            return None
