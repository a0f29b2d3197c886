"""The generated grounding_dino_onnx node, built with colcon and run as a process on the recorded bag: one
vision_msgs Detection2DArray per frame with its header, equal to what the runner computes; the prompt set
live with `ros2 param set`, applied from the next frame on with no frame lost and ~/label_info republished;
an unusable prompt refused with the reason while the node keeps its own."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("transformers", reason="Grounding DINO loads transformers checkpoints")
from node_harness import decoded, launched, replay_and_collect, set_parameter  # noqa: E402

from vision_factory.loaded_model import load_default_model  # noqa: E402
from vision_factory.ros.messages import boxes_xyxy  # noqa: E402
from vision_factory.tools.stand_in_models import grounding_dino_checkpoint  # noqa: E402
from vision_factory.tools.workspace import stop  # noqa: E402

NODE = "/grounding_dino_onnx"


def test_bag_replay_with_a_prompt_changed_live(workspace, frames, tmp_path_factory, tmp_path) -> None:
    checkpoint = grounding_dino_checkpoint(tmp_path_factory.mktemp("grounding_dino_node") / "small")
    half = len(frames) // 2
    with launched(workspace, "onnx", tmp_path, family="grounding_dino", model=str(checkpoint),
                  prompt="person . bus") as (process, probe, log):
        before = replay_and_collect(probe, "onnx", frames[:half], family="grounding_dino")
        assert set_parameter(probe, NODE, "prompt", "red car . dog . traffic light") == (True, "")
        refused, reason = set_parameter(probe, NODE, "prompt", " . ")
        after = replay_and_collect(probe, "onnx", frames[half:], family="grounding_dino")
        probe.spin_until(lambda: len(probe.outputs[f"{NODE}/label_info"]) >= 2, 10)
        label_infos = list(probe.outputs[f"{NODE}/label_info"])
    assert stop(process) == 0
    assert not refused and "prompt: prompt ' . ' names nothing to detect" in reason
    assert [[c.class_name for c in info.class_map] for info in label_infos] == [
        ["person", "bus"], ["red car", "dog", "traffic light"]]
    assert len(before) + len(after) == len(frames)  # every frame answered, none lost to the change
    runner = load_default_model("grounding_dino", "onnx", checkpoint, tmp_path / "cache", frame_hw=(540, 960))
    for answers, recorded, prompt in ((before, frames[:half], "person . bus"),
                                      (after, frames[half:], "red car . dog . traffic light")):
        for answer, frame in zip(answers, recorded):
            header, image = decoded(frame)
            assert (answer.header.stamp, answer.header.frame_id) == (header.stamp, header.frame_id)
            expected = runner.model(image, prompt=prompt)
            assert [d.results[0].hypothesis.class_id for d in answer.detections] == [
                expected.labels[i] for i in expected.class_ids]
            assert abs(boxes_xyxy(d.bbox for d in answer.detections) - expected.boxes_xyxy).max(initial=0) < 1e-3
    assert sum(len(answer.detections) for answer in before + after) > 0
    assert "exporting small for the onnx backend" in log.read_text()
