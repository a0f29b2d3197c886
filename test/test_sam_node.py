"""Two generated nodes in a pipeline, built with colcon and run as processes on the recorded bag: yolo_onnx's
detections prompt sam_onnx (prompts_topic), which answers every frame with a mono16 label image and the
prompts' echo, both with the frame's header, equal to what the runner computes for that frame and those
prompts; the echo is YOLO's detections in order, and the label image's ids index it."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("transformers", reason="SAM loads transformers checkpoints")
from node_harness import decoded, diagnostics_of, launched, replay_and_collect, results_of  # noqa: E402

from vision_factory.loaded_model import load_default_model  # noqa: E402
from vision_factory.ros.messages import boxes_xyxy, prompt_detections, stamp_key  # noqa: E402
from vision_factory.tools.stand_in_models import sam_checkpoint  # noqa: E402
from vision_factory.tools.workspace import stop  # noqa: E402


def label_values(msg) -> np.ndarray:
    assert msg.encoding == "mono16" and msg.step == 2 * msg.width
    return np.frombuffer(bytes(msg.data), "<u2" if not msg.is_bigendian else ">u2").reshape(msg.height, msg.width)


def test_yolo_detections_prompt_the_sam_node_on_the_bag(workspace, frames, tmp_path_factory, tmp_path) -> None:
    checkpoint = sam_checkpoint(tmp_path_factory.mktemp("sam_node") / "small")

    def found_yolo(probe) -> bool:  # sam_onnx's diagnostics count the prompt publishers it is connected to
        return any(s.get("prompt_publishers") == "1" for s in diagnostics_of(probe, "sam_onnx"))

    with launched(workspace, "onnx", tmp_path, family="yolo") as (yolo, probe, _), \
            launched(workspace, "onnx", tmp_path, family="sam", probe=probe, connected=found_yolo,
                     model=str(checkpoint), prompts_topic="/yolo_onnx/detections",
                     publish_debug_image=True) as (sam, _, log):
        assert probe.spin_until(lambda: found_yolo(probe), 30), \
            f"sam_onnx never found yolo_onnx:\n{log.read_text()}"
        masks = replay_and_collect(probe, "onnx", frames, family="sam", settle_s=2.0)
        # The echo and the debug image follow each label image: wait for the last frame's too.
        probe.spin_until(lambda: min(len(probe.outputs[f"/sam_onnx/{topic}"])
                                     for topic in ("detections", "debug_image")) >= len(frames), 10)
        probe.spin_until(lambda: len(results_of(probe, "onnx")) >= len(frames), 20)
        probe.spin_until(lambda: any(s.get("prompts_matched") == str(len(frames))
                                     for s in diagnostics_of(probe, "sam_onnx")), 5)
        echoes = list(probe.outputs["/sam_onnx/detections"])
        debug_images = list(probe.outputs["/sam_onnx/debug_image"])
        prompts = {stamp_key(msg.header): msg for msg in results_of(probe, "onnx")}
        status = diagnostics_of(probe, "sam_onnx")[-1]
    assert stop(sam) == 0 and stop(yolo) == 0
    assert len(masks) == len(echoes) == len(debug_images) == len(frames), log.read_text()  # every frame answered
    assert (status["prompts_matched"], status["prompts_unmatched"]) == (str(len(frames)), "0")
    runner = load_default_model("sam", "onnx", checkpoint, tmp_path / "cache", frame_hw=(540, 960))
    prompted = 0
    for frame, mask, echo in zip(frames, masks, echoes):
        header, image = decoded(frame)
        for answer in (mask, echo):
            assert (answer.header.stamp, answer.header.frame_id) == (header.stamp, header.frame_id)
        detections = prompts[stamp_key(header)]
        # The echo is the detector's detections, in order, with their classes and ids.
        assert [d.results[0].hypothesis.class_id for d in echo.detections] == [
            d.results[0].hypothesis.class_id for d in detections.detections]
        assert np.abs(boxes_xyxy(d.bbox for d in echo.detections)
                      - boxes_xyxy(d.bbox for d in detections.detections)).max(initial=0) < 1e-3
        labels = label_values(mask)
        assert labels.shape == image.shape[:2] and labels.max() <= len(echo.detections)
        expected = runner.model(image, prompts=prompt_detections(detections))
        assert np.mean(labels == expected.label_image) >= 0.999
        assert np.allclose([d.results[0].hypothesis.score for d in echo.detections], expected.prompts.scores,
                           atol=1e-4)
        prompted += len(echo.detections)
    assert prompted > 0
    assert "prompted by /yolo_onnx/detections" in log.read_text()
