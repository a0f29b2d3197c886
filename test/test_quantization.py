"""int8: calibration frames from images, videos and bags, the decode tail kept in fp32, the quantised network
cached like any export; how close it answers to fp32 is test_accuracy's."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ASSETS, BAG, CHECKPOINT, FP32_ONNX, asset
from vision_factory.errors import ConfigError
from vision_factory.loaded_model import load_default_model
from vision_factory.quantization import RecordingSession, calibration_frames, decode_tail, input_layer

VIDEO = ASSETS / "videos" / "mmpose_demo.mp4"
LOG = logging.getLogger("test")


def test_the_decode_tail_and_the_input_layer_are_found_in_the_graph() -> None:
    from onnx import TensorProto, helper

    def tensor(name: str) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)

    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="backbone"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),  # a Conv follows: quantised
             helper.make_node("Conv", ["b", "w2"], ["boxes_raw"], name="box_conv"),
             helper.make_node("Conv", ["b", "w3"], ["logits"], name="class_conv"),
             helper.make_node("Mul", ["boxes_raw", "stride"], ["boxes"], name="to_pixels"),
             helper.make_node("Sigmoid", ["logits"], ["scores"], name="sigmoid"),
             helper.make_node("Concat", ["boxes", "scores"], ["y"], name="concat", axis=1)]
    graph = helper.make_graph(nodes, "toy", [tensor("x")], [tensor("y")])
    assert decode_tail(helper.make_model(graph)) == ["to_pixels", "sigmoid", "concat"]
    assert input_layer(helper.make_model(graph)) == ["backbone"]  # reads the raw pixels: also kept in fp32


def test_calibration_frames_from_a_folder_a_video_and_a_bag(tmp_path: Path) -> None:
    for i in range(7):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 10, 3), i * 30, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    frames = calibration_frames(str(tmp_path), limit=3)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 90, 180]  # evenly through the sorted files
    video, bag = calibration_frames(str(asset(VIDEO))), calibration_frames(str(asset(BAG)))
    assert len(video) == len(bag) == 5 and video[0].shape == bag[0].shape == (540, 960, 3)
    pytest.importorskip("rclpy")
    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.recorded_images import read_images
    from vision_factory.tools.bag_replay import decode

    # rosbags' deserialisation (no ROS needed) gives the frames rclpy's does
    assert all(np.array_equal(b, image_to_bgr(m)) for b, m in zip(bag, decode(read_images(asset(BAG)))))


@pytest.mark.parametrize("source, message", [
    ("", "precision int8 needs calibration_data: a folder of images, a video or a rosbag2 folder"),
    ("/nonexistent/frames", "calibration_data '/nonexistent/frames' does not exist"),
    ("notes.txt", "is not a folder of images, a video (.mp4"),
    ("empty", "holds no readable frame"),
])
def test_unusable_calibration_data_is_one_line(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    path = str(tmp_path / source) if source and not source.startswith("/") else source
    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(".", "\\.")):
        calibration_frames(path)


def test_a_recording_session_keeps_what_it_was_fed() -> None:
    class Double:
        input_name, input_shape, active = "x", (-1,), "test"

        def run(self, inputs):
            return [inputs["x"] * 2]

    session = RecordingSession(Double())
    fed = np.ones(3, np.float32)
    assert session.run({"x": fed})[0].tolist() == [2, 2, 2] and session.active == "test"
    fed[:] = 5  # the model reuses its buffers: the recording is a copy
    assert session.inputs[0]["x"].tolist() == [1, 1, 1]


def operators_and_output_producer(path: Path) -> tuple[set[str], str]:
    """The operator types of a network file (ONNX or OpenVINO IR) and the type of the one producing its first
    output."""
    if path.suffix == ".onnx":
        import onnx

        network = onnx.load(str(path))
        producers = {output: node.op_type for node in network.graph.node for output in node.output}
        return {node.op_type for node in network.graph.node}, producers[network.graph.output[0].name]
    import openvino as ov

    network = ov.Core().read_model(str(path))
    result = network.get_results()[0]
    return {op.get_type_name() for op in network.get_ops()}, result.input_value(0).get_node().get_type_name()


@pytest.mark.parametrize("backend, quantize_ops", [("onnx", {"QuantizeLinear", "DequantizeLinear"}),
                                                    ("openvino", {"FakeQuantize"})])
def test_an_int8_model_is_quantised_once_into_the_cache(tmp_path: Path, backend: str, quantize_ops: set) -> None:
    weights, calibration = asset(FP32_ONNX), str(asset(BAG))
    first = load_default_model("yolo", backend, weights, tmp_path, LOG, precision="int8", calibration_data=calibration)
    operators, last = operators_and_output_producer(first.artifact.path)
    assert quantize_ops <= operators and first.artifact.exported
    # The output (boxes in pixels with scores in 0..1) comes out of a float op, not out of an int8 scale.
    assert last == "Concat"
    assert first.artifact.metadata == load_default_model("yolo", backend, weights, tmp_path / "fp32", LOG,
                                                         precision="fp32").artifact.metadata
    again = load_default_model("yolo", backend, weights, tmp_path, LOG, precision="int8", calibration_data=calibration)
    assert not again.artifact.exported and again.artifact.path == first.artifact.path
    image = cv2.imread(str(asset(ASSETS / "images" / "bus.jpg")))
    found = again.model(image)
    assert sum(found.class_name(int(c)) == "person" for c in found.class_ids) >= 4


def test_int8_without_calibration_data_or_on_another_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="precision int8 needs calibration_data"):
        load_default_model("yolo", "onnx", asset(FP32_ONNX), tmp_path, LOG, precision="int8")
    with pytest.raises(ConfigError, match="precision int8 is not available on the cuda backend"):
        load_default_model("yolo", "cuda", asset(CHECKPOINT), tmp_path, LOG, precision="int8",
                           calibration_data=str(asset(BAG)))


def test_int8_without_its_quantiser_installed_says_what_to_install(monkeypatch) -> None:
    import importlib.util

    from vision_factory.backends import BACKENDS
    from vision_factory.quantization import quantizer_of

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs nncf \(pip install -r requirements/openvino-int8.txt\)"):
        quantizer_of(BACKENDS["openvino"])
    assert quantizer_of(BACKENDS["onnx"]).artifact_filename == "model.onnx"
