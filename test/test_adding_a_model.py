"""The README's "adding a model" walk-through, done in a temporary folder: a throw-away model family defined
only by a manifest and a module outside the package is generated and its node runs, as a user's would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
onnx = pytest.importorskip("onnx")
from node_harness import next_domain  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

from vision_factory.tools.bag_replay import ReplayProbe  # noqa: E402
from vision_factory.tools.workspace import start_process, stop  # noqa: E402

MANIFEST = """\
name: brightness
summary: One box around the whole frame, scored by its mean brightness
module: brightness_model
output: detections
gpu_runtime: onnxruntime
default_weights: brightness.onnx
parameters:
  confidence_threshold:
    type: double
    default: 0.25
    range: [0.0, 1.0]
    description: Frames darker than this publish no box.
"""

MODULE = '''\
"""A throw-away model family: the weights handling and the per-frame model of the contract in
vision_factory.models, for an ONNX file whose output is one score per image."""
from pathlib import Path

import numpy as np

from vision_factory.detections import Detections
from vision_factory.models import OnnxOnlyWeights

WEIGHTS = OnnxOnlyWeights()
CHECKPOINTS, is_checkpoint = WEIGHTS.CHECKPOINTS, WEIGHTS.is_checkpoint
weights_problem, resolve_weights = WEIGHTS.weights_problem, WEIGHTS.resolve_weights


class Brightness:
    labels = ("bright",)

    def __init__(self, session):
        self.session = session

    def __call__(self, image_bgr, confidence_threshold=0.25):
        blob = np.ascontiguousarray(image_bgr.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        score = float(self.session.run({self.session.input_name: blob})[0].reshape(-1)[0])
        height, width = image_bgr.shape[:2]
        keep = int(score >= confidence_threshold)
        return Detections(np.array([[0, 0, width, height]], np.float32)[:keep], np.array([score], np.float32)[:keep],
                          np.zeros(keep, np.int64), self.labels)

    def option_problem(self, name, value):
        return ""


def build_model(sessions, metadata, options, logger):
    return Brightness(sessions["model"])
'''


def mean_brightness_onnx(path: Path) -> None:
    """images (1, 3, H, W) -> their mean, (1, 1, 1, 1)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["score"], keepdims=1)], "brightness",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1, 1, 1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def frame(value: int, stamp: int) -> Image:
    image = Image(height=48, width=64, encoding="bgr8", step=64 * 3, data=bytes([value]) * (48 * 64 * 3))
    image.header.stamp.sec, image.header.frame_id = stamp, "camera_optical_frame"
    return image


def sent_until_answered(probe, camera, image, answers: list, attempts: int = 10) -> bool:
    """Publish `image` until an answer with its stamp arrives (3 s each try). A frame sent within
    milliseconds of the camera's discovery can be lost on the way (seen in 2 of 6 full runs: the node had
    just matched the new publisher); answers are told apart by their stamps."""
    for _ in range(attempts):
        camera.publish(image)
        if probe.spin_until(lambda: any(a.header.stamp == image.header.stamp for a in answers), 3):
            return True
    return False


def test_a_model_family_from_a_manifest_and_a_module_outside_the_package(tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "brightness.yaml").write_text(MANIFEST)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "brightness_model.py").write_text(MODULE)
    weights = tmp_path / "brightness.onnx"
    mean_brightness_onnx(weights)
    domain = next_domain()
    env = {**os.environ, "VISION_FACTORY_MANIFESTS": str(tmp_path / "manifests"), "ROS_DOMAIN_ID": str(domain),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "modules"), os.environ.get("PYTHONPATH", "")])}

    generate = subprocess.run([sys.executable, "-m", "vision_factory", "generate", "--model", "brightness",
                               "--backend", "onnx", "--weights", str(weights), "--out", str(tmp_path / "src")],
                              env=env, capture_output=True, text=True, timeout=60)
    assert generate.returncode == 0, generate.stderr
    listed = subprocess.run([sys.executable, "-m", "vision_factory", "list"], env=env, capture_output=True, text=True)
    assert "brightness" in listed.stdout
    node_file = tmp_path / "src" / "brightness_onnx" / "brightness_onnx" / "brightness_onnx.py"
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        node = start_process([sys.executable, str(node_file), "--ros-args", "-p", f"cache_dir:={tmp_path / 'cache'}",
                              "-r", "image_raw:=/camera/image_raw"], env, stdout=out, stderr=subprocess.STDOUT)
    probe = ReplayProbe({"/brightness_onnx/detections": Detection2DArray, "/brightness_onnx/label_info": LabelInfo},
                        domain_id=domain, latched=("/brightness_onnx/label_info",))
    try:
        assert probe.wait_for_message("/brightness_onnx/label_info", 60, alive=lambda: node.poll() is None), \
            log.read_text()
        camera = probe.node.create_publisher(Image, "/camera/image_raw", 10)
        assert probe.spin_until(lambda: camera.get_subscription_count() > 0, 30)
        answers = probe.outputs["/brightness_onnx/detections"]
        for value, stamp in ((255, 100), (128, 101), (10, 102)):
            assert sent_until_answered(probe, camera, frame(value, stamp), answers), log.read_text()
    finally:
        probe.close()
        code = stop(node)
    assert code == 0, log.read_text()
    assert probe.outputs["/brightness_onnx/label_info"][0].class_map[0].class_name == "bright"
    by_stamp = {answer.header.stamp.sec: answer for answer in answers}
    assert sorted(by_stamp) == [100, 101, 102]
    white, grey, dark = (by_stamp[stamp] for stamp in (100, 101, 102))
    assert len(dark.detections) == 0  # 10/255 is under confidence_threshold
    for answer, value in ((white, 255), (grey, 128)):
        detection, = answer.detections
        assert detection.results[0].hypothesis.class_id == "bright"
        assert detection.results[0].hypothesis.score == pytest.approx(value / 255, abs=1e-4)  # a float32 mean
        assert (detection.bbox.center.position.x, detection.bbox.center.position.y,
                detection.bbox.size_x, detection.bbox.size_y) == (32.0, 24.0, 64.0, 48.0)
        assert answer.header.frame_id == "camera_optical_frame"
    assert np.isclose(white.detections[0].results[0].hypothesis.score, 1.0)
