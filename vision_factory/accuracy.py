"""How far a model at reduced precision answers from the same model at fp32, and from ground truth.

The metrics of the accuracy report (`vision-factory accuracy`): each compares one frame's result with the
fp32 result of the same frame, and adds up over a sample. Box overlaps and AP come from pycocotools (COCO's
own evaluation code), not from a copy of it here.
"""
from __future__ import annotations

import contextlib
import difflib
import io
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from vision_factory.depth import DepthMap
from vision_factory.detections import Detections
from vision_factory.generated_text import GeneratedText
from vision_factory.masks import Segmentation
from vision_factory.poses import Poses

# A detection (or a person) of the candidate stands for one of the reference when both boxes overlap this much:
# the PASCAL / COCO AP50 rule.
IOU_MIN = 0.5


def box_ious(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of x1, y1, x2, y2 boxes."""
    from pycocotools import mask

    if len(a_xyxy) == 0 or len(b_xyxy) == 0:
        return np.zeros((len(a_xyxy), len(b_xyxy)))
    xywh = [np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
            for boxes in (a_xyxy, b_xyxy)]
    return np.asarray(mask.iou(xywh[0], xywh[1], [0] * len(b_xyxy)))


def greedy_pairs(ious: np.ndarray, allowed: np.ndarray | None = None) -> list[tuple[int, int]]:
    """(reference, candidate) index pairs: each reference box in order (best score first) takes the free
    candidate box it overlaps most, if by IOU_MIN or more (and `allowed`, e.g. the same class)."""
    ious = np.where(allowed, ious, 0.0) if allowed is not None else ious.copy()
    pairs = []
    for r in range(ious.shape[0]):
        if ious.shape[1] and ious[r].max() >= IOU_MIN:
            c = int(ious[r].argmax())
            pairs.append((r, c))
            ious[:, c] = 0.0  # taken
    return pairs


class Tally:
    """A frozen dataclass of counts and per-sample tuples, one frame's: + joins two field by field (counts added,
    tuples concatenated), so the frames' add up to the whole sample's."""

    def __add__(self, other: Any) -> Any:
        return type(self)(*(getattr(self, field.name) + getattr(other, field.name) for field in fields(self)))


def _mean(values: Sequence[float], empty: float) -> float:
    """The mean of `values`; `empty` when there are none."""
    return float(np.mean(values)) if values else empty


@dataclass(frozen=True)
class DetectionAgreement(Tally):
    """The fp32 reference's detections the candidate recovers (same class, IoU >= IOU_MIN, paired greedily best
    reference score first), summed over frames with +. score_differences: |candidate - reference| per pair."""

    reference: int = 0
    recovered: int = 0
    added: int = 0  # candidate detections paired with none of the reference's
    score_differences: tuple[float, ...] = ()

    @property
    def lost(self) -> int:
        return self.reference - self.recovered

    @property
    def recovered_share(self) -> float:
        return self.recovered / self.reference if self.reference else 1.0

    @property
    def mean_score_difference(self) -> float:
        return _mean(self.score_differences, 0.0)

    @property
    def max_score_difference(self) -> float:
        return max(self.score_differences, default=0.0)


def detection_agreement(reference: Detections, candidate: Detections) -> DetectionAgreement:
    """How many of one frame's fp32 detections `candidate` recovers, and how their scores differ."""
    same_class = reference.class_ids[:, None] == candidate.class_ids[None, :]
    pairs = greedy_pairs(box_ious(reference.boxes_xyxy, candidate.boxes_xyxy), same_class)
    differences = tuple(abs(float(candidate.scores[c]) - float(reference.scores[r])) for r, c in pairs)
    return DetectionAgreement(len(reference), len(pairs), len(candidate) - len(pairs), differences)


def person_ap50(results: Mapping[int, Detections], truth: dict) -> float:
    """COCO AP at IoU 0.5 of the class `person` (maxDets 100, every area), for `results` by COCO image id
    against `truth`, a COCO annotation file's contents (e.g. person keypoints: its boxes). Through
    pycocotools' COCOeval, as COCO scores it."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    person = next(c["id"] for c in truth["categories"] if c["name"] == "person")
    found = [{"image_id": image_id, "category_id": person, "score": float(score),
              "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
             for image_id, result in results.items()
             for (x1, y1, x2, y2), score, class_id in zip(result.boxes_xyxy, result.scores, result.class_ids)
             if result.class_name(int(class_id)) == "person"]
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints its progress
        ground = COCO()
        ground.dataset = truth
        ground.createIndex()
        if not found:
            return 0.0
        evaluation = COCOeval(ground, ground.loadRes(found), "bbox")
        evaluation.params.catIds = [person]
        evaluation.params.imgIds = sorted(results)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1])


@dataclass(frozen=True)
class KeypointError(Tally):
    """Distances in pixels between the candidate's keypoints and the fp32 reference's, over the people both
    found (paired by box as detections are) and the keypoints both place; summed over frames with +."""

    people: int = 0
    found: int = 0
    distances: tuple[float, ...] = ()

    @property
    def mean_px(self) -> float:
        return _mean(self.distances, 0.0)

    @property
    def max_px(self) -> float:
        return max(self.distances, default=0.0)


def keypoint_error(reference: Poses, candidate: Poses) -> KeypointError:
    """One frame's keypoint distances between `candidate` and the fp32 `reference`."""
    pairs = greedy_pairs(box_ious(reference.boxes_xyxy, candidate.boxes_xyxy))
    distances: list[float] = []
    for r, c in pairs:
        gaps = np.linalg.norm(candidate.keypoints[c] - reference.keypoints[r], axis=-1)
        distances += gaps[~np.isnan(gaps)].tolist()  # NaN: a keypoint one of them left out
    return KeypointError(len(reference), len(pairs), tuple(distances))


@dataclass(frozen=True)
class DepthError(Tally):
    """Per frame, the mean absolute difference to the fp32 depth divided by the mean absolute fp32 depth
    (relative error), and the largest difference divided by the fp32 depth's range; + collects frames."""

    relative: tuple[float, ...] = ()
    worst_of_range: tuple[float, ...] = ()

    @property
    def mean_relative(self) -> float:
        return _mean(self.relative, 0.0)

    @property
    def max_of_range(self) -> float:
        return max(self.worst_of_range, default=0.0)


def depth_error(reference: DepthMap, candidate: DepthMap) -> DepthError:
    """One frame's depth error of `candidate` against the fp32 `reference`. Relative depth is inverse depth up
    to scale and shift, so per-pixel ratios would explode near 0: errors are taken against the map's scale."""
    r, c = reference.values.astype(np.float64), candidate.values.astype(np.float64)
    difference = np.abs(c - r)
    scale, extent = float(np.mean(np.abs(r))), float(r.max() - r.min())
    return DepthError((float(difference.mean()) / scale if scale else 0.0,),
                      (float(difference.max()) / extent if extent else 0.0,))


@dataclass(frozen=True)
class MaskAgreement(Tally):
    """Per prompt, the IoU of the candidate's mask with the fp32 reference's mask of the same prompt, and the
    difference of their predicted IoU scores; + collects prompts and frames."""

    ious: tuple[float, ...] = ()
    score_differences: tuple[float, ...] = ()

    @property
    def mean_iou(self) -> float:
        return _mean(self.ious, 1.0)

    @property
    def min_iou(self) -> float:
        return min(self.ious, default=1.0)

    @property
    def max_score_difference(self) -> float:
        return max(self.score_differences, default=0.0)


def mask_agreement(reference: Sequence[Segmentation], candidate: Sequence[Segmentation]) -> MaskAgreement:
    """One frame's masks, prompt by prompt: each Segmentation of the two sequences answers one prompt, the same
    prompt at the same index (one prompt each, so that overlapping masks do not hide each other). Two empty
    masks agree (IoU 1)."""
    ious, differences = [], []
    for ours, theirs in zip(reference, candidate, strict=True):
        for index in range(len(ours)):
            a, b = ours.label_image == index + 1, theirs.label_image == index + 1
            union = int(np.count_nonzero(a | b))
            ious.append(np.count_nonzero(a & b) / union if union else 1.0)
            differences.append(abs(float(ours.prompts.scores[index]) - float(theirs.prompts.scores[index])))
    return MaskAgreement(tuple(ious), tuple(differences))


@dataclass(frozen=True)
class TextAgreement(Tally):
    """Per frame, whether the candidate's generated text equals the fp32 reference's, and how alike the two are
    (difflib's ratio over their words: 1 equal, 0 nothing in common); + collects frames."""

    same: tuple[bool, ...] = ()
    similarity: tuple[float, ...] = ()

    @property
    def same_share(self) -> float:
        return _mean(self.same, 1.0)

    @property
    def mean_similarity(self) -> float:
        return _mean(self.similarity, 1.0)


def text_agreement(reference: GeneratedText, candidate: GeneratedText) -> TextAgreement:
    """One frame's generated text against the fp32 reference's."""
    words = difflib.SequenceMatcher(None, reference.text.split(), candidate.text.split(), autojunk=False)
    return TextAgreement((reference.text == candidate.text,), (words.ratio(),))


Result = Detections | Poses | DepthMap | GeneratedText | Sequence[Segmentation]
Comparison = DetectionAgreement | KeypointError | DepthError | MaskAgreement | TextAgreement


def compare(reference: Result, candidate: Result) -> Comparison:
    """The comparison that suits the kind of result: detections, poses, depth, generated text, or masks (a
    frame's masks as one Segmentation per prompt)."""
    if isinstance(reference, Detections):
        return detection_agreement(reference, candidate)
    if isinstance(reference, Poses):
        return keypoint_error(reference, candidate)
    if isinstance(reference, DepthMap):
        return depth_error(reference, candidate)
    if isinstance(reference, GeneratedText):
        return text_agreement(reference, candidate)
    if isinstance(reference, (list, tuple)) and all(isinstance(r, Segmentation) for r in reference):
        return mask_agreement(reference, candidate)
    raise TypeError(f"no accuracy comparison for {type(reference).__name__} results")

