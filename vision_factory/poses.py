"""The result type of pose models, and what their keypoints mean."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """Keypoint names (index i names keypoint i) and the limbs as index pairs."""

    name: str
    keypoint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Poses:
    """Poses in source-image pixels, best box score first.

    boxes_xyxy (N, 4) and scores (N,): the detector's boxes; keypoints (N, K, 2) x, y, NaN where the
    keypoint's score is below the threshold; keypoint_scores (N, K).
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    skeleton: Skeleton

    def __len__(self) -> int:
        return len(self.scores)
