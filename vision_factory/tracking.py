"""Multi-object tracking: ids that stay with an object from frame to frame, for any detector's boxes.

The trackers come from the `trackers` library (Roboflow, Apache-2.0: ByteTrack, SORT, OC-SORT), fed with
the frames' header stamps, so a dropped frame or a slow detector ages tracks by the time that passed, not
by a frame count: a lost track lives `lost_s` seconds at any frame rate. Tracking is class-agnostic, as
ByteTrack is. A stamp earlier than the last one (a bag played again from the start) starts afresh.
ByteTrack's second stage matches the boxes scoring below track_high_threshold: a detector must publish
them (its own threshold below that one) for it to help.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from vision_factory.errors import ConfigError
from vision_factory.parameters import ParameterSpec

NONE = "none"
TRACKERS = {"bytetrack": "ByteTrackTracker", "sort": "SORTTracker", "ocsort": "OCSORTTracker"}  # -> class
# The library counts a lost track's lifetime in frames at this rate; with stamps it is the Kalman filter's
# time unit (one predict step per 1/30 s), so lifetimes in seconds convert at it.
REFERENCE_FPS = 30.0


@dataclass(frozen=True)
class TrackerSettings:
    """The tracker and its settings, as the node's `tracker` and `track_*` parameters give them."""

    kind: str = NONE  # "none" or a key of TRACKERS
    # Defaults measured (test_tracker_node): on TUD-Campus with noisy boxes, ultralytics' thresholds (0.25,
    # also the YOLO nodes' confidence_threshold) gave the best IDF1 of those tried; a match IoU of 0.3 did
    # better there (25 fps) than the library's 0.1, but changed 4 of 19 ids on the 5 fps street bag, where
    # people move further between frames, and 0.1 none.
    activation_threshold: float = 0.25  # an unmatched detection scoring at least this starts a track
    high_threshold: float = 0.25  # ByteTrack / OC-SORT: detections below it are matched second, to lost tracks
    match_iou: float = 0.1  # a detection and a track's predicted box overlap at least this to match
    lost_s: float = 1.0  # how long a track without detections is kept to be found again
    min_frames: int = 2  # matches in a row before a track gets an id

    PARAMETERS = {"kind": "tracker", "activation_threshold": "track_activation_threshold",
                  "high_threshold": "track_high_threshold", "match_iou": "track_match_iou",
                  "lost_s": "track_lost_s", "min_frames": "track_min_frames"}

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "TrackerSettings":
        """From the node's parameter values (named as in PARAMETERS)."""
        return cls(**{field: values[parameter] for field, parameter in cls.PARAMETERS.items()})


def tracker_parameters(default: str) -> tuple[ParameterSpec, ...]:
    """The tracker parameters every node of a tracking kind declares; `tracker` defaults to `default`."""
    settings = TrackerSettings()
    return (
        ParameterSpec("tracker", "string", default, "Track ids in each Detection2D.id (stable strings; '' for a box "
                      "no confirmed track holds): none, or bytetrack, sort, ocsort from the trackers library. Time "
                      "between frames comes from their header stamps. A change of any tracker setting starts "
                      "tracking afresh.", choices=(NONE, *TRACKERS)),
        ParameterSpec("track_activation_threshold", "double", settings.activation_threshold,
                      "A detection no track takes starts a new track if it scores at least this (not OC-SORT).",
                      range=(0.0, 1.0)),
        ParameterSpec("track_high_threshold", "double", settings.high_threshold, "ByteTrack and OC-SORT: "
                      "detections scoring less are matched second, only to tracks the others left.",
                      range=(0.0, 1.0)),
        ParameterSpec("track_match_iou", "double", settings.match_iou, "A detection matches a track when its box "
                      "overlaps the track's predicted box by at least this IoU.", range=(0.01, 1.0)),
        ParameterSpec("track_lost_s", "double", settings.lost_s, "Seconds a track without detections is kept (and "
                      "keeps its id if found again): an occlusion shorter than this does not change ids.",
                      range=(0.0, 3600.0)),
        ParameterSpec("track_min_frames", "integer", settings.min_frames, "Matches in a row before a new track "
                      "gets an id (1: at once; more filters out flickering false detections).", range=(1, 100)),
    )


def tracker_problem(kind: str) -> str:
    """'' if tracker `kind` can run here, else why not (the library is optional)."""
    if kind == NONE:
        return ""
    try:
        _library()
    except ConfigError as e:
        return str(e)
    return ""


def _library() -> Any:
    try:
        import trackers
    except ImportError as e:
        raise ConfigError(f"tracking needs the trackers library (pip install -r requirements/tracking.txt, "
                          f"see the README): {e}") from e
    return trackers


class DetectionTracker:
    """Assigns track ids to each frame's boxes. update() returns, per box in the order given, its id as a
    decimal string ('1', '2', ...), or '' for a box no confirmed track holds (yet)."""

    def __init__(self, settings: TrackerSettings):
        if settings.kind not in TRACKERS:
            raise ConfigError(f"tracker '{settings.kind}' is not one of: {', '.join(TRACKERS)}")
        self.settings = settings
        self._class = getattr(_library(), TRACKERS[settings.kind])
        self._tracker = self._new_tracker()
        self._last_stamp: float | None = None
        self.resets = 0  # times a stamp went backwards and tracking started afresh

    def _new_tracker(self) -> Any:
        settings = self.settings
        arguments = {"lost_track_buffer": max(1, round(settings.lost_s * REFERENCE_FPS)),
                     "frame_rate": REFERENCE_FPS, "track_activation_threshold": settings.activation_threshold,
                     "minimum_consecutive_frames": settings.min_frames, "minimum_iou_threshold": settings.match_iou,
                     "high_conf_det_threshold": settings.high_threshold}
        accepted = inspect.signature(self._class).parameters  # SORT has no high threshold, OC-SORT no activation
        return self._class(**{name: value for name, value in arguments.items() if name in accepted})

    def update(self, boxes_xyxy: np.ndarray, scores: np.ndarray, stamp_s: float) -> list[str]:
        """Ids for one frame's boxes (N, 4) x1 y1 x2 y2 and scores (N,), stamped stamp_s seconds."""
        import supervision

        if self._last_stamp is not None and stamp_s < self._last_stamp:
            self._tracker, self.resets = self._new_tracker(), self.resets + 1
        self._last_stamp = stamp_s
        count = len(scores)
        detections = supervision.Detections(
            xyxy=np.asarray(boxes_xyxy, np.float64).reshape(count, 4), confidence=np.asarray(scores, np.float64),
            class_id=np.zeros(count, int), data={"index": np.arange(count)})
        with warnings.catch_warnings():  # a repeated stamp is legal in ROS; the library warns about it
            warnings.simplefilter("ignore", UserWarning)
            tracked = self._tracker.update(detections, timestamp=stamp_s)
        ids = [""] * count
        if len(tracked):  # returned in the library's own order: the index maps them back
            for index, track_id in zip(tracked.data["index"].tolist(), tracked.tracker_id.tolist()):
                ids[index] = str(track_id + 1) if track_id >= 0 else ""  # '0' reads as unset to many users
        return ids


TIME_WENT_BACK = "the input's stamps went back in time (a bag played again?): tracking afresh"


class LiveTracker:
    """The tracker a node's parameters ask for, replaced (tracking afresh) when they change; what nodes
    log about it. configure() and ids() may run on different threads: ids() uses the tracker it took."""

    def __init__(self, logger: Any):
        self._logger = logger
        self.settings: TrackerSettings | None = None
        self._tracker: DetectionTracker | None = None
        self.resets = 0  # times stamps went back, over every tracker this one held

    def configure(self, values: Mapping[str, Any]) -> None:
        """Take the node's parameter values: a new tracker when the tracker settings in them changed."""
        settings = TrackerSettings.from_values(values)
        if settings == self.settings:
            return
        if self.settings is not None:
            self._logger.info(f"tracker settings changed: tracking afresh with {settings}")
        self.settings = settings
        self._tracker = None if settings.kind == NONE else DetectionTracker(settings)

    def ids(self, boxes_xyxy: np.ndarray, scores: np.ndarray, stamp_s: float) -> list[str] | None:
        """DetectionTracker.update's ids for one frame; None while the tracker is `none`."""
        tracker = self._tracker
        if tracker is None:
            return None
        resets = tracker.resets
        ids = tracker.update(boxes_xyxy, scores, stamp_s)
        if tracker.resets != resets:
            self.resets += 1
            self._logger.info(TIME_WENT_BACK)
        return ids
