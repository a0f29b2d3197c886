"""The result type of detector models."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Detections in source-image pixels, best score first.

    boxes_xyxy (N, 4) float32, scores (N,) float32, class_ids (N,) int64; labels maps class id -> name;
    track_ids: per box its track's id ('' where no confirmed track holds it), or () when nothing tracks.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: tuple[str, ...]
    track_ids: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.scores)

    def class_name(self, class_id: int) -> str:
        """The model's name for `class_id`, or the id as text when the model has none."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    @classmethod
    def empty(cls, labels: tuple[str, ...]) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), labels)
