"""End to end, as a user runs it: generate the YOLO packages, colcon build them, start each node as its own
process with --ros-args, replay the recorded bag at its recorded rate (slowed to the node's pace when the
machine cannot keep up: see node_harness.replay_and_collect) and check every answer."""
from __future__ import annotations

import re
import subprocess
import time

import pytest

from conftest import BAG, CHECKPOINT, FP32_ONNX, INT8_ONNX, asset
from reference import from_detections, from_message, mismatches, ultralytics_predict

pytest.importorskip("rclpy")
from node_harness import (decoded, get_parameter, launched, next_domain, replay_and_collect, results_of,  # noqa: E402
                          set_parameter)

from vision_factory.recorded_images import read_images  # noqa: E402
from vision_factory.tools.workspace import node_command, stop  # noqa: E402

CONF = 0.25


# cuda runs on the CPU here (no GPU): the fallback path, with the real PyTorch model.
CASES = [("onnx", INT8_ONNX), ("onnx", CHECKPOINT), ("openvino", CHECKPOINT), ("openvino", FP32_ONNX),
         ("cuda", CHECKPOINT)]


@pytest.mark.parametrize("backend, weights", CASES, ids=[f"{b}-{w.name}" for b, w in CASES])
def test_every_frame_gets_one_answer_matching_ultralytics(workspace, frames, tmp_path, backend, weights) -> None:
    # Parity with ultralytics is at fp32; what openvino's default (auto: bf16 here) changes is the accuracy
    # report's to measure (test_accuracy).
    precision = {"precision": "fp32"} if backend == "openvino" else {}
    with launched(workspace, backend, tmp_path, model=str(asset(weights)), **precision) as (process, probe, log):
        answers = replay_and_collect(probe, backend, frames)
        assert process.poll() is None
    assert stop(process) == 0
    assert len(answers) == len(frames), f"{len(answers)} answers to {len(frames)} frames"
    for answer, frame in zip(answers, frames):
        assert_matches_ultralytics(answer, frame, weights)


def assert_matches_ultralytics(answer, frame, weights) -> None:
    """`answer` is `frame`'s (its header) and holds ultralytics' detections of it."""
    header, image = decoded(frame)
    assert (answer.header.stamp, answer.header.frame_id) == (header.stamp, header.frame_id)
    reference = ultralytics_predict(weights, image, CONF)
    assert len(reference) >= 10  # a street scene: the comparison is not vacuous
    assert mismatches(from_message(answer), reference, CONF) == [], f"frame {header.stamp}"
    assert all(d.header == header and d.results[0].hypothesis.class_id for d in answer.detections)


def test_throughput_mode_runs_frames_side_by_side_and_answers_in_frame_order(workspace, frames, tmp_path) -> None:
    """openvino's performance_mode throughput: frames sent at 10x the recorded rate (50 Hz, faster than one
    inference), unpaced: the frames that are answered are answered in order, each with its own detections, and
    the newest frame always is."""
    with launched(workspace, "openvino", tmp_path, model=str(asset(FP32_ONNX)), precision="fp32",
                  performance_mode="throughput") as (process, probe, log):
        active = get_parameter(probe, "yolo_openvino", "active_device")
        probe.replay("/camera/image_raw", frames, rate=10.0)
        last = stamp_ns(decoded(frames[-1])[0])
        probe.spin_until(lambda: any(stamp_ns(a.header) == last for a in results_of(probe, "openvino")), 30)
        answers = results_of(probe, "openvino")
    assert stop(process) == 0
    assert re.fullmatch(r"CPU \(fp32\), throughput: \d+ requests", active), active
    frame_of = {stamp_ns(decoded(frame)[0]): frame for frame in frames}
    stamps = [stamp_ns(answer.header) for answer in answers]
    assert stamps == sorted(set(stamps)) and stamps[-1] == last, stamps
    for answer, stamp in zip(answers, stamps):
        assert_matches_ultralytics(answer, frame_of[stamp], FP32_ONNX)


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def test_live_parameters_apply_on_the_next_frame_and_bad_values_are_refused(workspace, frames, tmp_path) -> None:
    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        before = replay_and_collect(probe, "onnx", frames)
        assert set_parameter(probe, "/yolo_onnx", "confidence_threshold", 0.6) == (True, "")
        raised = replay_and_collect(probe, "onnx", frames)

        ok, reason = set_parameter(probe, "/yolo_onnx", "classes", "person,dragon")
        assert not ok and "unknown class 'dragon'" in reason
        ok, reason = set_parameter(probe, "/yolo_onnx", "confidence_threshold", 1.5)
        assert not ok
        assert set_parameter(probe, "/yolo_onnx", "classes", "bench") == (True, "")
        benches = replay_and_collect(probe, "onnx", frames)
        label_infos = probe.outputs["/yolo_onnx/label_info"]
    assert [round(info.threshold, 3) for info in label_infos] == [0.25, 0.6]
    assert label_infos[0].class_map[0].class_name == "person" and len(label_infos[0].class_map) == 80
    assert len(before) == len(raised) == len(benches) == len(frames)
    for low, high in zip(before, raised):
        assert len(high.detections) < len(low.detections)
        assert all(d.results[0].hypothesis.score > 0.6 for d in high.detections)
    names = {d.results[0].hypothesis.class_id for answer in benches for d in answer.detections}
    assert names == {"bench"}  # the refused values left the threshold at 0.6; the class filter applies


def test_second_launch_loads_the_cached_export_and_answers_the_same(workspace, frames, tmp_path) -> None:
    answers, logs = [], []
    for _ in range(2):
        with launched(workspace, "openvino", tmp_path, model=str(asset(CHECKPOINT))) as (process, probe, log):
            answers.append(replay_and_collect(probe, "openvino", frames[:2]))
        logs.append(log.read_text())
    assert "exporting yolov8n_from_int8_onnx.pt for the openvino backend" in logs[0]
    assert "exporting" not in logs[1] and "loaded the cached openvino export" in logs[1]
    assert [from_message(a) for a in answers[0]] == [from_message(a) for a in answers[1]]
    assert len(list((tmp_path / "cache").glob("*/metadata.json"))) == 1


def test_an_int8_node_quantises_on_first_launch_and_runs_what_it_cached(workspace, frames, tmp_path) -> None:
    """precision int8 calibrated on the bag: the node quantises once, then answers every frame exactly as the
    cached int8 network does in-process (how close that is to fp32: test_accuracy)."""
    from vision_factory.loaded_model import load_default_model

    weights, bag = asset(FP32_ONNX), str(asset(BAG))
    with launched(workspace, "onnx", tmp_path, model=str(weights), precision="int8", calibration_data=bag) as (
            process, probe, log):
        answers = replay_and_collect(probe, "onnx", frames)
    assert "calibrating int8 on 5 frames" in log.read_text() and "quantising" in log.read_text()
    cached = load_default_model("yolo", "onnx", weights, tmp_path / "cache", precision="int8", calibration_data=bag)
    assert not cached.artifact.exported
    assert len(answers) == len(frames)
    for answer, frame in zip(answers, frames):
        expected = from_detections(cached.model(decoded(frame)[1]))
        assert len(expected) >= 5 and mismatches(from_message(answer), expected, CONF) == []


def test_compressed_input_and_debug_image(workspace, tmp_path) -> None:
    compressed = read_images(asset(BAG), compressed=True)
    with launched(workspace, "onnx", tmp_path, input_compressed=True, publish_debug_image=True) as (process, probe, log):
        answers = replay_and_collect(probe, "onnx", compressed, topic="/camera/image_raw/compressed")
        probe.spin_until(lambda: len(probe.outputs["/yolo_onnx/debug_image"]) >= len(compressed), 10)
        debug = probe.outputs["/yolo_onnx/debug_image"]
    assert len(answers) == len(compressed) == len(debug)
    assert all(sum(d.results[0].hypothesis.class_id == "person" for d in a.detections) >= 5 for a in answers)
    assert [(a.header.stamp, a.header.frame_id) for a in answers] == [(d.header.stamp, d.header.frame_id) for d in debug]
    assert (debug[0].encoding, debug[0].width, debug[0].height) == ("bgr8", 960, 540)


def test_sigterm_exits_cleanly(workspace, tmp_path) -> None:
    import signal

    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("model, content, message", [
    ("/nonexistent/yolo.onnx", None, "model file '/nonexistent/yolo.onnx' does not exist"),
    ("garbage.onnx", b"\x00 not a model", "garbage.onnx' is not a readable ONNX model"),
    ("notes.txt", b"\x00 not a model", "notes.txt' is not an ONNX file (.onnx) or a checkpoint (.pt)"),
    ("empty.onnx", b"", "empty.onnx' is empty (0 bytes)"),
    ("folder.onnx", "folder", "folder.onnx' is a directory, not a file"),
])
def test_an_unusable_model_exits_non_zero_with_one_line(workspace, tmp_path, model, content, message) -> None:
    ws, env = workspace
    if content == "folder":
        (tmp_path / model).mkdir()
    elif content is not None:
        (tmp_path / model).write_bytes(content)
    if content is not None:
        model = str(tmp_path / model)
    command = node_command(ws, "yolo_onnx", "yolo_onnx", {"model": model, "cache_dir": str(tmp_path)})
    started = time.monotonic()
    result = subprocess.run(command, env={**env, "ROS_DOMAIN_ID": str(next_domain())}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and time.monotonic() - started < 30
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("yolo_onnx: cannot start: ") and message in errors[0]
