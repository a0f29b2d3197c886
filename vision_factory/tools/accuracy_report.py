"""`vision-factory accuracy`: how far each precision of one model x backend answers from its fp32 answers, on
every frame of the shipped video and images, and (for detectors) its person AP50 on the COCO images.

The fp32 row is the reference; every other row is compared with it frame by frame (vision_factory.accuracy):
detections recovered at IoU >= 0.5 of the same class, boxes lost and added, score differences; keypoint
distances in pixels; depth error relative to the fp32 map's scale; mask IoU prompt by prompt (a segmentation
model is prompted with a MASK_GRID x MASK_GRID grid of points on each frame, one at a time, in place of its
boxes / points parameters); generated text equal or how alike. The sample is small (a handful of images and
video frames, 14 annotated people): a smoke report of what a precision changes, not a COCO mAP.
"""
from __future__ import annotations

import functools
import json
import logging
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from vision_factory.accuracy import (DepthError, DetectionAgreement, KeypointError, MaskAgreement, TextAgreement,
                                     compare, person_ap50)
from vision_factory.errors import ConfigError
from vision_factory.backends import Backend
from vision_factory.loaded_model import load_model
from vision_factory.manifest import Manifest

COCO_FOLDER = Path("images") / "coco_mmpose"
COCO_TRUTH = COCO_FOLDER / "test_coco.json"
OTHER_IMAGES = (Path("images") / "bus.jpg", Path("images") / "zidane.jpg")
VIDEO = Path("videos") / "mmpose_demo.mp4"
COMPARABLE_OUTPUTS = ("detections", "poses", "depth", "masks", "text")  # the kinds vision_factory.accuracy compares
MASK_GRID = 3  # point prompts a side on each frame for a segmentation model


@dataclass(frozen=True)
class Frame:
    """One image of the sample; coco_id: its id in COCO_TRUTH, or None."""

    name: str
    image: np.ndarray
    coco_id: int | None = None


def sample_frames(assets: Path) -> tuple[list[Frame], dict]:
    """Every frame of the sample in `assets` (../shared/assets' layout) and the COCO ground truth of its COCO
    images. ConfigError when a file is missing."""
    truth_path = assets / COCO_TRUTH
    if not truth_path.is_file():
        raise ConfigError(f"the accuracy sample is not there: {truth_path} is missing")
    truth = json.loads(truth_path.read_text())
    frames = [Frame(image["file_name"], _read(assets / COCO_FOLDER / image["file_name"]), image["id"])
              for image in truth["images"]]
    frames += [Frame(path.name, _read(assets / path)) for path in OTHER_IMAGES]
    video = cv2.VideoCapture(str(assets / VIDEO))
    while True:
        ok, image = video.read()
        if not ok:
            break
        frames.append(Frame(f"{VIDEO.name}#{len(frames)}", image))
    video.release()
    return frames, truth


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise ConfigError(f"the accuracy sample is not there: cannot read {path}")
    return image


def precision_choices(backend: Backend) -> tuple[str, ...]:
    """The values the backend's `precision` parameter takes; () for a backend without one."""
    spec = next((p for p in backend.parameters if p.name == "precision"), None)
    return tuple(spec.choices) if spec else ()


def answers(manifest: Manifest, backend: Backend, values: Mapping[str, Any], frames: Sequence[Frame],
            frame_hw: tuple[int, int] | None, logger: Any) -> tuple[str, list[Any]]:
    """(what ran, per frame the model's result) for a node with parameter `values` prepared for frames of
    `frame_hw` (None: the default size)."""
    loaded = load_model(manifest, backend, values, logger, frame_hw=frame_hw)
    options = loaded.frame_options(values)
    if manifest.output == "masks":  # one prompt a call, so that no mask hides under another in the label image
        return loaded.session.active, [[loaded.model(frame.image, **{**options, "boxes": "", "points": point})
                                        for point in grid_points(frame.image.shape[:2])] for frame in frames]
    return loaded.session.active, [loaded.model(frame.image, **options) for frame in frames]


def grid_points(frame_hw: tuple[int, int], side: int = MASK_GRID) -> list[str]:
    """`points` prompts ("x,y") at the centres of a side x side tiling of a frame, row by row (the grid SAM's
    automatic mask generator samples)."""
    height, width = frame_hw
    return [f"{(column + 0.5) * width / side:.1f},{(row + 0.5) * height / side:.1f}"
            for row in range(side) for column in range(side)]


def row(precision: str, active: str, results: list[Any], reference: list[Any], frames: Sequence[Frame],
        truth: dict) -> dict[str, Any]:
    """One precision's line of the report: its results compared with the fp32 `reference`, frame by frame."""
    line: dict[str, Any] = {"precision": precision, "running": active, "frames": len(frames)}
    total = functools.reduce(operator.add, map(compare, reference, results))
    if isinstance(total, DetectionAgreement):
        coco = {frame.coco_id: result for frame, result in zip(frames, results) if frame.coco_id is not None}
        line.update(fp32_detections=total.reference, recovered=round(total.recovered_share, 4), lost=total.lost,
                    added=total.added, mean_score_diff=round(total.mean_score_difference, 4),
                    max_score_diff=round(total.max_score_difference, 4),
                    person_ap50=round(person_ap50(coco, truth), 4), ap50_images=len(coco),
                    ap50_people=sum(1 for a in truth["annotations"] if a["image_id"] in coco))
    elif isinstance(total, KeypointError):
        line.update(fp32_people=total.people, people_found=total.found, keypoint_mean_px=round(total.mean_px, 3),
                    keypoint_max_px=round(total.max_px, 3))
    elif isinstance(total, DepthError):
        line.update(depth_mean_relative=round(total.mean_relative, 5), depth_max_of_range=round(total.max_of_range, 5))
    elif isinstance(total, MaskAgreement):
        line.update(prompts=len(total.ious), mask_mean_iou=round(total.mean_iou, 4),
                    mask_min_iou=round(total.min_iou, 4), max_score_diff=round(total.max_score_difference, 4))
    elif isinstance(total, TextAgreement):
        line.update(texts_same=round(total.same_share, 4), text_similarity=round(total.mean_similarity, 4))
    return line


def report(manifest: Manifest, backend: Backend, values: Mapping[str, Any], precisions: Sequence[str],
           assets: Path, frame_hw: tuple[int, int] | None = None,
           logger: Any = logging.getLogger(__name__)) -> list[dict[str, Any]]:
    """The report's lines: fp32 first (the reference; compared with itself it recovers everything), then each
    of `precisions`, for a node with parameter `values` prepared for frames of `frame_hw` (models sized by the
    camera; None: the default size)."""
    if manifest.output not in COMPARABLE_OUTPUTS:
        raise ConfigError(f"the accuracy report compares {', '.join(COMPARABLE_OUTPUTS)}; {manifest.name} publishes "
                          f"{manifest.output}")
    choices = precision_choices(backend)
    if "fp32" not in choices:
        raise ConfigError(f"the {backend.name} backend has no fp32 precision to compare with")
    unknown = [p for p in precisions if p not in choices]
    if unknown:
        raise ConfigError(f"the {backend.name} backend has no precision {', '.join(unknown)} "
                          f"(it has {', '.join(choices)})")
    frames, truth = sample_frames(assets)
    active, reference = answers(manifest, backend, {**values, "precision": "fp32"}, frames, frame_hw, logger)
    lines = [row("fp32", active, reference, reference, frames, truth)]
    for precision in dict.fromkeys(p for p in precisions if p != "fp32"):
        active, results = answers(manifest, backend, {**values, "precision": precision}, frames, frame_hw,
                                  logger)
        lines.append(row(precision, active, results, reference, frames, truth))
    return lines


def markdown(title: str, lines: Sequence[Mapping[str, Any]]) -> str:
    """The report as a Markdown table under `title`."""
    columns = list(dict.fromkeys(key for line in lines for key in line))
    rows = [f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    rows += [f"| {' | '.join(str(line.get(c, '')) for c in columns)} |" for line in lines]
    return "\n".join([f"### {title}", "", *rows, ""])


def write(out: Path, title: str, lines: Sequence[Mapping[str, Any]]) -> str:
    """Write accuracy.json and accuracy.md into `out`; the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(title, lines)
    (out / "accuracy.json").write_text(json.dumps({"title": title, "rows": list(lines)}, indent=1))
    (out / "accuracy.md").write_text(text)
    return text
