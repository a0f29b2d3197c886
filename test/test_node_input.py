"""The node's input path in-process: any Image message is either answered or refused with a clear,
throttled error, and the node keeps serving. Property-based over encodings, sizes, steps and lengths."""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import INT8_ONNX, asset

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from node_harness import next_domain  # noqa: E402
from vision_factory.generator import plan_package  # noqa: E402
from vision_factory.image_conversion import ENCODINGS, compressed_to_bgr, image_to_bgr  # noqa: E402
from vision_factory.ros.node import InferenceNode  # noqa: E402


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A real yolo onnx node in this process, its model ready, with its publications counted."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=next_domain())
    plan = plan_package("yolo", "onnx", weights=str(asset(INT8_ONNX)))
    overrides = [Parameter("cache_dir", value=str(tmp_path_factory.mktemp("cache")))]
    node = InferenceNode("yolo_onnx", "yolo", "onnx", plan.parameters, context=context,
                         parameter_overrides=overrides)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    deadline = time.monotonic() + 60
    while node._live.current is None and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    assert node._live.current is not None, node._live.last_error
    executor.spin_once(timeout_sec=0.1)  # announce it
    published = []
    output, = node._outputs
    original = output.publish
    output.publish = lambda *args: (published.append(args), original(*args))
    node.published = published
    node.executor_ = executor
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def feed(node, msg) -> tuple[int, int]:
    """Run one frame through the node's input path and its publishing; (published, rejected) increments."""
    before = len(node.published), node._stats.rejected_total
    delivery = node._process_frames([(0, msg, time.monotonic(), None)])
    if delivery is not None:
        delivery()
    return len(node.published) - before[0], node._stats.rejected_total - before[1]


def image(encoding: str, width: int, height: int, step: int, length: int) -> Image:
    data = np.random.default_rng(width * 31 + height).integers(0, 256, max(length, 0), dtype=np.uint8)
    return Image(encoding=encoding, width=width, height=height, step=step, data=data.tobytes())


CHANNELS = {name: channels for name, (channels, _) in ENCODINGS.items()}


@st.composite
def image_messages(draw) -> tuple[Image, bool]:
    encoding = draw(st.sampled_from([*ENCODINGS, "16UC1", "yuv422", "BGR8", ""]))
    width, height = draw(st.integers(0, 48)), draw(st.integers(0, 48))
    channels = CHANNELS.get(encoding.lower(), 3)
    step = width * channels + draw(st.sampled_from([0, 0, 0, 1, 5, -1, -channels]))
    length = max(step, 0) * height + draw(st.sampled_from([0, 0, 0, -1, 1, 100]))
    valid = (encoding.lower() in ENCODINGS and width > 0 and height > 0 and step >= width * channels
             and length == step * height)
    return image(encoding, width, height, max(step, 0), length), valid


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=image_messages())
def test_any_image_is_answered_or_refused_and_the_node_keeps_serving(node, case) -> None:
    msg, valid = case
    published, rejected = feed(node, msg)
    assert (published, rejected) == ((1, 0) if valid else (0, 1))


def test_an_8k_frame_is_answered_and_a_larger_one_refused(node, caplog) -> None:
    assert feed(node, image("bgr8", 7680, 4320, 7680 * 3, 7680 * 4320 * 3)) == (1, 0)
    header_image = node.published[-1][2]
    assert header_image.shape == (4320, 7680, 3)
    assert feed(node, image("mono8", 8000, 6000, 8000, 8000 * 6000)) == (0, 1)  # 48 MP > 40


def test_a_corrupt_compressed_frame_is_refused(node) -> None:
    node._decode = compressed_to_bgr  # as with input_compressed: true
    try:
        assert feed(node, CompressedImage(format="jpeg", data=b"\xff\xd8 truncated")) == (0, 1)
    finally:
        node._decode = image_to_bgr


def test_a_nan_model_output_skips_the_frame_and_the_node_goes_on(node, monkeypatch) -> None:
    session = node._live.current.model.session
    real_run = session.run
    monkeypatch.setattr(session, "run", lambda inputs: [np.full_like(real_run(inputs)[0], np.nan)])
    frame = image("bgr8", 64, 48, 64 * 3, 64 * 48 * 3)
    assert feed(node, frame) == (0, 1)
    monkeypatch.setattr(session, "run", real_run)
    assert feed(node, frame) == (1, 0)


@pytest.mark.parametrize("name, value, reason", [
    ("confidence_threshold", "high", "Wrong parameter type"),
    ("confidence_threshold", 1.5, ""),
    ("max_detections", 0, ""),
    ("input_reliability", "reliable", "read-only"),
    ("classes", "person,unicorn", "unknown class 'unicorn'"),
])
def test_wrong_types_and_out_of_range_values_are_refused(node, name, value, reason) -> None:
    before = node.get_parameter(name).value
    try:
        result = node.set_parameters([Parameter(name, value=value)])[0]
        successful, text = result.successful, result.reason
    except Exception as e:  # rclpy raises for a type that does not match the declared one
        successful, text = False, str(e)
    assert not successful and reason.lower() in text.lower()
    assert node.get_parameter(name).value == before
