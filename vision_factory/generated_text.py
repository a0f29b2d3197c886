"""The result type of models that answer a frame with generated text (Florence-2): the text, and the
regions the text names where the task locates things."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vision_factory.detections import Detections


@dataclass(frozen=True)
class GeneratedText:
    """One frame's answer to a task.

    task: the task that produced it (e.g. "caption", "od"). text: the answer (text tasks: the caption or the
    text read; region tasks: the generated text, labels and <loc_N> tokens). regions: the located things in
    source pixels, class name = their label (empty for text tasks), score 1 (the model gives none).
    polygons: per region, its outline as (K, 2) source pixels where the task gives one (OCR with regions:
    the four corners of each text's quadrilateral), else ()."""

    task: str
    text: str
    regions: Detections
    polygons: tuple[np.ndarray, ...] = ()

    @classmethod
    def text_only(cls, task: str, text: str) -> "GeneratedText":
        return cls(task, text, Detections.empty(()))
