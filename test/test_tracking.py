"""Tracking without ROS: ids kept through a missed frame, lifetimes in seconds whatever the frame rate,
ids in the order the boxes were given, a fresh start when stamps go back, the parameters' mapping."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

pytest.importorskip("trackers", reason="tracking needs the trackers library (requirements/tracking.txt)")
from vision_factory.errors import ConfigError  # noqa: E402
from vision_factory.tracking import (NONE, TIME_WENT_BACK, TRACKERS, DetectionTracker,  # noqa: E402
                                     LiveTracker, TrackerSettings, tracker_parameters, tracker_problem)

BOX_A, BOX_B = np.array([10.0, 10, 50, 90]), np.array([200.0, 100, 250, 200])


def run(tracker: DetectionTracker, frames: list[tuple[list[np.ndarray], float]]) -> list[list[str]]:
    """Ids per frame for (boxes, stamp) frames, every box scoring 0.9."""
    return [tracker.update(np.array(boxes).reshape(-1, 4), np.full(len(boxes), 0.9), stamp) for boxes, stamp in frames]


@pytest.mark.parametrize("kind", TRACKERS)
def test_an_object_keeps_its_id_through_a_missed_frame(kind) -> None:
    """Two objects, one moving; the moving one is not detected in frame 3. ByteTrack and SORT give it
    its id back at once, OC-SORT once it is seen again twice; no id is ever given to another object."""
    frames = [([BOX_A + [4 * f, 0, 4 * f, 0], BOX_B][f == 3:], f / 5) for f in range(8)]
    ids = run(DetectionTracker(TrackerSettings(kind=kind)), frames)
    assert ids[0] == ["", ""] and ids[1] == ["1", "2"] and ids[3] == ["2"]
    assert ids[-1] == ["1", "2"] and all(a in ("", "1") and b in ("", "2") for a, b in (f for f in ids if len(f) == 2))


@pytest.mark.parametrize("fps", [5, 30])
def test_a_lost_track_lives_track_lost_s_seconds_at_any_frame_rate(fps) -> None:
    """lost_s 1: an object unseen for 0.8 s comes back with its id; unseen for 1.6 s, with a new one."""
    for gap_s, same in ((0.8, True), (1.6, False)):
        tracker = DetectionTracker(TrackerSettings(kind="bytetrack", lost_s=1.0))
        seen = [([BOX_A], f / fps) for f in range(3)]
        back = 2 / fps + gap_s
        ids = run(tracker, seen + [([], f / fps) for f in range(3, int(back * fps))]
                  + [([BOX_A], back + f / fps) for f in range(3)])
        assert ids[1] == ["1"] and (ids[-1] == ["1"]) == same, (fps, gap_s, ids)


def test_ids_follow_the_order_the_boxes_are_given_in() -> None:
    """The library returns boxes in its own order: every box still gets its own track's id."""
    tracker = DetectionTracker(TrackerSettings(kind="bytetrack"))
    boxes = [BOX_A + [60 * i, 0, 60 * i, 0] for i in range(5)]
    run(tracker, [(boxes, 0.0), (boxes, 0.1)])
    first = tracker.update(np.array(boxes), np.array([0.9, 0.55, 0.95, 0.52, 0.8]), 0.2)
    reverse = tracker.update(np.array(boxes[::-1]), np.array([0.8, 0.52, 0.95, 0.55, 0.9]), 0.3)
    assert sorted(first) == ["1", "2", "3", "4", "5"] and reverse == first[::-1]


def test_stamps_going_back_start_tracking_afresh() -> None:
    """A bag played again from its start: tracks of the first pass do not match the second's boxes."""
    tracker = DetectionTracker(TrackerSettings(kind="bytetrack"))
    first = run(tracker, [([BOX_A], 10 + f / 10) for f in range(3)])
    again = run(tracker, [([BOX_A], 10 + f / 10) for f in range(3)])
    assert first == again == [[""], ["1"], ["1"]] and tracker.resets == 1


def test_a_live_tracker_starts_afresh_on_a_settings_change_only_and_says_so(caplog) -> None:
    """What both kinds of node use: no ids while `none`; a new tracker (logged) when a tracker setting
    changes, not when the values are given again; stamps going back logged and counted."""
    logger = logging.getLogger("live_tracker")
    values = {spec.name: spec.default for spec in tracker_parameters(NONE)}
    live = LiveTracker(logger)
    with caplog.at_level(logging.INFO, logger="live_tracker"):
        live.configure(values)
        assert live.ids(np.array([BOX_A]), np.array([0.9]), 0.0) is None
        live.configure({**values, "tracker": "bytetrack"})
        live.configure({**values, "tracker": "bytetrack"})
        assert [live.ids(np.array([BOX_A]), np.array([0.9]), f / 10) for f in range(3)] == [[""], ["1"], ["1"]]
        assert live.ids(np.array([BOX_A]), np.array([0.9]), 0.0) == [""] and live.resets == 1
    assert caplog.text.count("tracking afresh with") == 1 and TIME_WENT_BACK in caplog.text


def test_without_the_library_a_tracker_is_refused_with_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "trackers", None)  # what an install without requirements/tracking.txt sees
    assert "requirements/tracking.txt" in tracker_problem("bytetrack") and tracker_problem(NONE) == ""
    with pytest.raises(ConfigError, match="tracking needs the trackers library"):
        DetectionTracker(TrackerSettings(kind="bytetrack"))


def test_settings_come_from_the_parameters_and_refuse_unknown_trackers() -> None:
    specs = {spec.name: spec for spec in tracker_parameters("bytetrack")}
    settings = TrackerSettings.from_values({name: spec.default for name, spec in specs.items()})
    assert settings == TrackerSettings(kind="bytetrack")
    assert specs["tracker"].choices == (NONE, *TRACKERS) and tracker_problem("sort") == ""
    assert "not one of" in specs["tracker"].validate("deepsort")
