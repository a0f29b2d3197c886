"""The built florence2_onnx package run as a process on the recorded bag, once with task od and once with task
caption (set live with `ros2 param set`'s service between the two replays): every frame answered on ~/text and
~/detections with its header, each answer equal to what the runner computes for that frame and task."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("transformers", reason="Florence-2 loads transformers checkpoints")
from node_harness import decoded, launched, replay_and_collect, set_parameter  # noqa: E402

from vision_factory.loaded_model import load_default_model  # noqa: E402
from vision_factory.ros.messages import boxes_xyxy  # noqa: E402
from vision_factory.tools.stand_in_models import florence2_checkpoint  # noqa: E402
from vision_factory.tools.workspace import stop  # noqa: E402

NEW_TOKENS = 24


def test_od_then_caption_on_the_bag(workspace, frames, tmp_path_factory, tmp_path) -> None:
    checkpoint = florence2_checkpoint(tmp_path_factory.mktemp("florence2_node") / "small")
    answers = {}
    with launched(workspace, "onnx", tmp_path, family="florence2", model=str(checkpoint), task="od",
                  max_new_tokens=NEW_TOKENS, publish_debug_image=True) as (node, probe, _):
        for task in ("od", "caption"):
            if task != "od":
                assert set_parameter(probe, "/florence2_onnx", "task", task)[0]
            before = len(probe.outputs["/florence2_onnx/detections"])
            texts = replay_and_collect(probe, "onnx", frames, family="florence2", settle_s=2.0)
            # ~/detections and ~/debug_image follow each ~/text: wait for the last frame's
            probe.spin_until(lambda: min(len(probe.outputs[f"/florence2_onnx/{topic}"]) for topic in (
                "detections", "debug_image")) >= before + len(frames), 10)
            answers[task] = (texts, list(probe.outputs["/florence2_onnx/detections"])[before:])
        debug_images = list(probe.outputs["/florence2_onnx/debug_image"])
    assert stop(node) == 0
    assert len(debug_images) == 2 * len(frames)
    runner = load_default_model("florence2", "onnx", checkpoint, tmp_path / "cache", frame_hw=(540, 960)).model
    located = 0
    for task, (texts, detections) in answers.items():
        assert len(texts) == len(detections) == len(frames), task  # every frame answered
        for frame, text, found in zip(frames, texts, detections):
            header, image = decoded(frame)
            for answer in (text, found):
                assert (answer.header.stamp, answer.header.frame_id) == (header.stamp, header.frame_id)
            expected = runner(image, task, "", NEW_TOKENS)
            assert (text.task, text.text) == (task, expected.text)
            assert [d.results[0].hypothesis.class_id for d in found.detections] == [
                expected.regions.class_name(int(c)) for c in expected.regions.class_ids]
            assert np.abs(boxes_xyxy(d.bbox for d in found.detections)
                          - expected.regions.boxes_xyxy).max(initial=0) < 1e-3
            located += len(found.detections)
    assert located > 0 and not any(answers["caption"][1][i].detections for i in range(len(frames)))
