"""Live switching with `ros2 param set` on running nodes (their ~/set_parameters service, from another
process): providers, devices and models change without a restart, impossible values are refused, and a
failed rebuild keeps the node serving."""
from __future__ import annotations

import dataclasses

import pytest

from conftest import FP32_ONNX, INT8_ONNX, asset
from reference import from_message, mismatches, ultralytics_predict

pytest.importorskip("rclpy")
from node_harness import (decoded, diagnostics_of, get_parameter, launched, replay_and_collect,  # noqa: E402
                          set_parameter, set_parameter_async)

CONF = 0.25
# Both references come from the same runtime as the node (onnxruntime), so an answer matches its own
# model to ~1e-6; int8 and fp32 weights differ by far more than this on every frame of the bag.
STRICT = {"iou_min": 0.99, "score_tol": 1e-3}


def wait_for_report(probe, node: str, name: str, expected: str, timeout_s: float = 60) -> str:
    """Poll the node's report parameter (as `ros2 param get` would) until it says `expected`."""
    found = [""]

    def reported() -> bool:
        found[0] = get_parameter(probe, node, name)
        return found[0] == expected

    probe.spin_until(reported, timeout_s)
    return found[0]


def test_onnx_provider_switch_falls_back_and_says_so(workspace, frames, tmp_path) -> None:
    with launched(workspace, "onnx", tmp_path, execution_provider="cpu") as (process, probe, log):
        assert get_parameter(probe, "/yolo_onnx", "active_execution_provider") == "CPUExecutionProvider"
        assert set_parameter(probe, "/yolo_onnx", "execution_provider", "cuda,cpu") == (True, "")
        assert wait_for_report(probe, "/yolo_onnx", "active_execution_provider", "CPUExecutionProvider") \
            == "CPUExecutionProvider"
        probe.spin_until(lambda: "skipped: CUDAExecutionProvider" in log.read_text(), 30)
        answers = replay_and_collect(probe, "onnx", frames)
        ok, reason = set_parameter(probe, "/yolo_onnx", "active_execution_provider", "CUDAExecutionProvider")
        statuses = diagnostics_of(probe, "yolo_onnx")
    assert "skipped: CUDAExecutionProvider (available: " in log.read_text()
    assert len(answers) == len(frames)
    assert not ok and "reports what runs" in reason
    assert statuses and statuses[-1]["active"] == "CPUExecutionProvider" and statuses[-1]["state"] == "running"
    assert statuses[-1]["level"] == 0


def test_openvino_precision_and_device_switch(workspace, frames, tmp_path) -> None:
    import openvino as ov

    with launched(workspace, "openvino", tmp_path, device="CPU") as (process, probe, log):
        default = get_parameter(probe, "/yolo_openvino", "active_device")
        assert set_parameter(probe, "/yolo_openvino", "precision", "fp32") == (True, "")
        forced = wait_for_report(probe, "/yolo_openvino", "active_device", "CPU (fp32)")
        assert set_parameter(probe, "/yolo_openvino", "device", "AUTO") == (True, "")
        active = wait_for_report(probe, "/yolo_openvino", "active_device", "AUTO (CPU, fp32)")
        answers = replay_and_collect(probe, "openvino", frames[:2])
        ok, reason = set_parameter(probe, "/yolo_openvino", "device", "gpu 0")
    # YOLO's default on openvino is the device's own precision: bf16 on CPUs with bf16 units.
    bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert default == f"CPU (auto: {'bf16' if bf16 else 'fp32'})"
    assert forced == "CPU (fp32)" and active == "AUTO (CPU, fp32)" and len(answers) == 2
    assert not ok and "is not an OpenVINO device name (available here: CPU" in reason


def test_cuda_device_switch_reports_the_cpu_fallback(workspace, frames, tmp_path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the fallback cannot be observed")
    with launched(workspace, "cuda", tmp_path, model=str(asset(INT8_ONNX).parent / "derived" / "yolov8n_from_int8_onnx.pt"),
                  device="cpu") as (process, probe, log):
        assert get_parameter(probe, "/yolo_cuda", "active_device") == "cpu (fp32)"
        assert "falling back" not in log.read_text()
        assert set_parameter(probe, "/yolo_cuda", "device", "cuda:0") == (True, "")
        probe.spin_until(lambda: "falling back from cuda:0 to cpu" in log.read_text(), 60)
        active = wait_for_report(probe, "/yolo_cuda", "active_device", "cpu (fp32)")
        answers = replay_and_collect(probe, "cuda", frames[:2])
        ok, reason = set_parameter(probe, "/yolo_cuda", "device", "gpu0")
    assert "no GPU visible to PyTorch" in log.read_text() and active == "cpu (fp32)" and len(answers) == 2
    assert not ok and "'gpu0' is not a PyTorch device" in reason


def test_model_swap_while_the_bag_replays(workspace, frames, tmp_path) -> None:
    """Three passes of the bag; the model changes after the fifth frame. Every frame gets one answer, the
    answers switch once from the int8 model's to the fp32 model's, and none mixes them."""
    period = frames[-1].timestamp_ns - frames[0].timestamp_ns + (frames[1].timestamp_ns - frames[0].timestamp_ns)
    passes = [dataclasses.replace(m, timestamp_ns=m.timestamp_ns + k * period) for k in range(3) for m in frames]
    pending = []

    def swap_after_fifth(index: int) -> None:
        if index == 5:
            pending.append(set_parameter_async(probe, "/yolo_onnx", "model", str(asset(FP32_ONNX))))

    with launched(workspace, "onnx", tmp_path, model=str(asset(INT8_ONNX))) as (process, probe, log):
        answers = replay_and_collect(probe, "onnx", passes, on_frame=swap_after_fifth)
        assert probe.spin_until(lambda: pending and pending[0].done(), 10)
        assert pending[0].result().results[0].successful
    assert len(answers) == len(passes), f"{len(answers)} answers to {len(passes)} frames"
    kinds = []
    for answer, frame in zip(answers, passes):
        header, image = decoded(frame)
        assert answer.header.stamp == header.stamp
        ours = from_message(answer)
        matches = {name: not mismatches(ours, ultralytics_predict(weights, image, CONF), CONF, **STRICT)
                   for name, weights in (("int8", INT8_ONNX), ("fp32", FP32_ONNX))}
        assert sum(matches.values()) == 1, f"frame {len(kinds)}: {matches}"
        kinds.append("int8" if matches["int8"] else "fp32")
    switch = kinds.index("fp32")
    assert 5 <= switch < len(kinds) - 5 and kinds == ["int8"] * switch + ["fp32"] * (len(kinds) - switch)


def test_impossible_values_are_refused_and_detections_continue_unchanged(workspace, frames, tmp_path) -> None:
    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        before = replay_and_collect(probe, "onnx", frames)
        refused = [set_parameter(probe, "/yolo_onnx", name, value) for name, value in (
            ("execution_provider", "cuda11,cpu"), ("model", "/nonexistent/yolo.onnx"), ("device", "cuda:0"))]
        after = replay_and_collect(probe, "onnx", frames)
        kept = get_parameter(probe, "/yolo_onnx", "execution_provider"), get_parameter(probe, "/yolo_onnx", "model")
    assert [ok for ok, _ in refused] == [False] * 3
    assert "unknown execution provider 'cuda11'" in refused[0][1] and "available here: " in refused[0][1]
    assert "model file '/nonexistent/yolo.onnx' does not exist" in refused[1][1]
    assert "'cuda:0' is not a GPU index" in refused[2][1]
    assert kept == ("cpu", str(INT8_ONNX.resolve()))  # the node names the file it opened
    assert [from_message(a) for a in before] == [from_message(a) for a in after]
    assert "rebuilding" not in log.read_text()


def test_a_failed_rebuild_keeps_the_old_session_and_is_reported(workspace, frames, tmp_path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00 half an export")
    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        before = replay_and_collect(probe, "onnx", frames[:2])
        assert set_parameter(probe, "/yolo_onnx", "model", str(broken)) == (True, "")  # exists: accepted
        probe.spin_until(lambda: "rebuilding the model session failed" in log.read_text(), 30)
        probe.spin_until(lambda: any(s["level"] == 1 for s in diagnostics_of(probe, "yolo_onnx")), 5)
        after = replay_and_collect(probe, "onnx", frames[:2])
        statuses = diagnostics_of(probe, "yolo_onnx")
        # `model` keeps what was asked for; the read-only active_model says which weights still serve.
        requested, serving = (get_parameter(probe, "/yolo_onnx", name) for name in ("model", "active_model"))
    assert (requested, serving) == (str(broken), str(INT8_ONNX.resolve()))
    assert "is not a readable ONNX model" in log.read_text() and "still serving" in log.read_text()
    assert [from_message(a) for a in before] == [from_message(a) for a in after]
    warned = [s for s in statuses if s["level"] == 1]
    assert warned and "is not a readable ONNX model" in warned[-1]["last_error"] and warned[-1]["state"] == "running"
