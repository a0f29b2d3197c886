"""Top-down pose with RTMPose: a person detector (vision_factory.models.person_detector) finds people,
RTMPose estimates keypoints in each box (body 17, wholebody 133, hand 21: the count comes from the model).

The model-specific processing is rtmlib's (its affine crop, normalisation and SimCC decoding, its skeleton
tables); only the runtime is ours: rtmlib's steps run around our backend sessions.

This is the model module of manifests/rtmpose.yaml and the weights module of its `model` parameter:
RTMPose weights are ONNX files (rtmlib's model zoo), so there is nothing to export and no PyTorch path.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import cv2
import numpy as np
from rtmlib.tools.pose_estimation.post_processings import get_simcc_maximum
from rtmlib.tools.pose_estimation.pre_processings import bbox_xyxy2cs, top_down_affine
from rtmlib.visualization import skeleton as rtmlib_skeletons

from vision_factory.backends.session import Session
from vision_factory.cpus import usable_cpus
from vision_factory.models.person_detector import person_detector
from vision_factory.models.rtmlib_support import ZOO_WEIGHTS
from vision_factory.poses import Poses, Skeleton

# The weights handling (vision_factory.models.WeightsHandler): ONNX files or rtmlib zoo URLs.
CHECKPOINTS, is_checkpoint = ZOO_WEIGHTS.CHECKPOINTS, ZOO_WEIGHTS.is_checkpoint
weights_problem, resolve_weights = ZOO_WEIGHTS.weights_problem, ZOO_WEIGHTS.resolve_weights

# RTMPose's input normalisation (ImageNet mean / std on 0-255 pixels), as rtmlib's defaults; the box
# padding and the SimCC bins per input pixel, as rtmlib's RTMPose uses them.
MEAN = np.array((123.675, 116.28, 103.53))
STD = np.array((58.395, 57.12, 57.375))
# (pixel - MEAN) / STD for every uint8 pixel value, per channel (crops are uint8, as rtmlib's warp leaves them).
NORMALISATION_TABLES = [((np.arange(256) - mean) / std).astype(np.float32) for mean, std in zip(MEAN, STD)]
BOX_PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0
MAX_CROP_WORKERS = 4  # threads that crop a frame's people (one per CPU, at most this many)
# rtmlib's skeleton tables by keypoint count (as its draw_skeleton picks them).
SKELETONS = {17: "coco17", 133: "coco133", 21: "hand21", 25: "coco25", 26: "halpe26"}


class PoseEstimator:
    """RTMPose on a session whose input is (batch, 3, height, width) and whose outputs are SimCC x and y, with
    rtmlib's functions for the crop (bbox_xyxy2cs, top_down_affine) and the decoding (get_simcc_maximum), in
    the steps its RTMPose class takes. Every person of a frame goes through one session run when the network's
    batch axis is dynamic (one run each when it is fixed), and is normalised and decoded in one pass: rtmlib's
    per-person Python made pose nodes about 3x slower than their networks with many people in view."""

    def __init__(self, session: Session):
        height, width = session.input_shape[2:4]
        self.session = session
        self.model_input_size = (width, height)  # rtmlib's order
        self.batched = session.input_shape[0] == -1
        self._crop_workers = min(MAX_CROP_WORKERS, len(usable_cpus()))
        self._crop_pool = ThreadPoolExecutor(self._crop_workers, thread_name_prefix="pose_crops")

    def crop(self, image_bgr: np.ndarray, box_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (H, W, 3) crop around one box (padded by BOX_PADDING, at the model's aspect), and the crop's
        centre and size (x, y) in source pixels."""
        center, scale = bbox_xyxy2cs(np.asarray(box_xyxy), padding=BOX_PADDING)
        crop, scale = top_down_affine(self.model_input_size, scale, center, image_bgr)
        return crop, center, scale

    def preprocess(self, image_bgr: np.ndarray, boxes_xyxy: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The normalised (N, 3, H, W) crops around N boxes, and their centres and sizes (N, 2)."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        width, height = self.model_input_size
        blob = np.empty((len(boxes), 3, height, width), np.float32)
        centers, scales = np.empty((len(boxes), 2), np.float32), np.empty((len(boxes), 2), np.float32)

        def crop_into(indices: range) -> None:
            for index in indices:
                crop, centers[index], scales[index] = self.crop(image_bgr, boxes[index])
                # rtmlib's (crop - MEAN) / STD, looked up per channel: its float64 values cast to float32, bit
                # for bit, written straight into the tensor (1.1 against 1.6 ms of arithmetic for 15 people).
                for channel, plane in enumerate(cv2.split(crop)):
                    cv2.LUT(plane, NORMALISATION_TABLES[channel], dst=blob[index, channel])

        # OpenCV's warp and lookup release the GIL: the people of a frame are cropped on every CPU the process
        # may use (15 people: 2.9 against 4.3 ms on 2 CPUs).
        parts = [range(start, len(boxes), self._crop_workers) for start in range(min(self._crop_workers, len(boxes)))]
        if len(parts) > 1:
            list(self._crop_pool.map(crop_into, parts))
        else:
            crop_into(range(len(boxes)))
        return blob, centers, scales

    def runs(self, blob: np.ndarray) -> list[np.ndarray]:
        """The crops of a frame through the network: one run, or one per crop when its batch is fixed."""
        if self.batched or len(blob) == 1:
            return self.session.run({self.session.input_name: blob})
        outputs = [self.session.run({self.session.input_name: blob[i:i + 1]}) for i in range(len(blob))]
        return [np.concatenate(parts) for parts in zip(*outputs)]

    def postprocess(self, outputs: list[np.ndarray], centers: np.ndarray,
                    scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SimCC outputs (N, K, bins) -> keypoints (N, K, 2) in source pixels and their scores (N, K)."""
        locations, scores = get_simcc_maximum(outputs[0], outputs[1])
        keypoints = (locations / SIMCC_SPLIT_RATIO / np.array(self.model_input_size) * scales[:, None]
                     + centers[:, None] - scales[:, None] / 2)
        return keypoints, scores

    def __call__(self, image_bgr: np.ndarray, boxes_xyxy: Any) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in source pixels and their scores (N, K) for N >= 1 boxes."""
        blob, centers, scales = self.preprocess(image_bgr, boxes_xyxy)
        keypoints, scores = self.postprocess(self.runs(blob), centers, scales)
        return keypoints.astype(np.float32), scores.astype(np.float32)


def skeleton_for(keypoint_count: int, logger: Any = logging.getLogger(__name__)) -> Skeleton:
    """rtmlib's keypoint names and limbs for a model with this many keypoints; numbered names and no
    limbs (with a warning) for a count rtmlib has no table for."""
    name = SKELETONS.get(keypoint_count)
    if name is None:
        logger.warning(f"no skeleton is known for {keypoint_count} keypoints: they are published as "
                       f"keypoint_0.. without limbs")
        return Skeleton(f"unknown{keypoint_count}", tuple(f"keypoint_{i}" for i in range(keypoint_count)), ())
    table = getattr(rtmlib_skeletons, name)
    info = table["keypoint_info"]
    names = tuple(info[i]["name"] for i in range(len(info)))
    edges = tuple((names.index(link["link"][0]), names.index(link["link"][1]))
                  for link in table["skeleton_info"].values())
    return Skeleton(name, names, edges)


class TopDownPose:
    """Detector boxes, best first, then the pose in each of the first max_poses."""

    def __init__(self, detector: Any, estimator: PoseEstimator, logger: Any = logging.getLogger(__name__)):
        self.detector, self.estimator = detector, estimator
        # One estimate on a blank crop: tells the keypoint count, and allocates the pose session now
        # rather than on the first frame with a person in it.
        height, width = estimator.model_input_size[::-1]
        keypoints, _ = estimator(np.zeros((height, width, 3), np.uint8), [[0, 0, width, height]])
        self.skeleton = skeleton_for(keypoints.shape[1], logger)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.skeleton.keypoint_names

    def __call__(self, image_bgr: np.ndarray, detector_confidence_threshold: float = 0.3,
                 keypoint_score_threshold: float = 0.3, max_poses: int = 20) -> Poses:
        boxes, scores = self.detector(image_bgr, detector_confidence_threshold)
        boxes, scores = boxes[:max_poses], scores[:max_poses]
        count = len(self.skeleton.keypoint_names)
        if len(boxes) == 0:
            keypoints, keypoint_scores = np.zeros((0, count, 2), np.float32), np.zeros((0, count), np.float32)
        else:
            keypoints, keypoint_scores = self.estimator(image_bgr, boxes)
            keypoints[keypoint_scores < keypoint_score_threshold] = np.nan
        return Poses(boxes, scores, keypoints, keypoint_scores, self.skeleton)

    def option_problem(self, name: str, value: Any) -> str:
        return ""  # every value the parameter ranges allow works


def build_model(sessions: Mapping[str, Session], metadata: Mapping[str, Mapping[str, str]],
                options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)) -> TopDownPose:
    """RTMPose on the `model` session, the person detector on the `detector_model` one."""
    detector = person_detector(sessions["detector_model"], metadata["detector_model"], logger)
    return TopDownPose(detector, PoseEstimator(sessions["model"]), logger)
