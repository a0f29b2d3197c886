"""Frames and the prompt messages made from them, paired by stamp (vision_factory.prompt_matching)."""
from __future__ import annotations

from vision_factory.prompt_matching import StampMatcher


def test_a_prompt_finds_its_frame_among_the_recent_ones() -> None:
    matcher = StampMatcher(frames=3)
    for stamp in (1, 2, 3, 4):
        assert matcher.add_frame(stamp, f"frame{stamp}") is None
    assert matcher.add_prompt(3, "p3") == "frame3"
    assert matcher.add_prompt(3, "p3 again") == "frame3"  # a second detector's prompts for the same frame
    assert matcher.add_prompt(1, "p1") is None  # frame 1 is no longer kept
    assert (matcher.matched, matcher.unmatched) == (2, 1)


def test_a_prompt_before_its_frame_waits_for_it() -> None:
    matcher = StampMatcher(frames=2)
    matcher.add_frame(1, "frame1")
    assert matcher.add_prompt(2, "p2") is None
    assert matcher.add_frame(2, "frame2") == "p2"
    assert (matcher.matched, matcher.unmatched) == (1, 0)


def test_a_prompt_whose_frame_never_comes_is_counted() -> None:
    matcher = StampMatcher(frames=2)
    matcher.add_frame(1, "frame1")
    assert matcher.add_prompt(5, "p5") is None  # may still come
    for stamp in (6, 7):
        assert matcher.add_frame(stamp, f"frame{stamp}") is None
    assert (matcher.matched, matcher.unmatched) == (0, 1)  # frames newer than it arrived, and it was not among them
    assert matcher.add_prompt(4, "p4") is None  # frame 4 was lost in transport
    assert matcher.unmatched == 2


def test_waiting_prompts_are_bounded() -> None:
    matcher = StampMatcher(frames=2)
    for stamp in (10, 11, 12):
        matcher.add_prompt(stamp, f"p{stamp}")
    assert matcher.unmatched == 1
    assert matcher.add_frame(11, "frame11") == "p11"
