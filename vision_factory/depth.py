"""The result type of depth models."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRIC, RELATIVE = "metric", "relative"


@dataclass(frozen=True)
class DepthMap:
    """One value per input pixel, (H, W) float32.

    kind METRIC: depth in metres. kind RELATIVE: affine-invariant inverse depth (larger is nearer; scale
    and shift unknown), as relative Depth Anything models predict it.
    """

    values: np.ndarray
    kind: str
