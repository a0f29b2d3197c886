"""ONNX models with RTMPose's and OpenMMLab YOLOX's exact signatures and known answers, built with
onnx.helper: the pose model's SimCC peaks sit at chosen bins, the detector returns chosen boxes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

INPUT_WH = (192, 256)  # RTMPose-m body: input (1, 3, 256, 192)
SPLIT = 2.0  # SimCC bins per input pixel
KEYPOINTS = 17
DETECTOR_INPUT = 640  # a 640x480 frame letterboxes at ratio 1: box coordinates pass through unchanged
# Peak values: rtmlib scores a keypoint as the mean of its x and y peaks.
PEAK_X, PEAK_Y = 0.9, 0.7


def peak_bins(keypoints: int = KEYPOINTS) -> np.ndarray:
    """(K, 2) SimCC bins (x, y) spread over the crop, away from its edges and not on a grid."""
    rng = np.random.default_rng(7)
    return np.stack([rng.integers(20, INPUT_WH[0] * SPLIT - 20, keypoints),
                     rng.integers(20, INPUT_WH[1] * SPLIT - 20, keypoints)], axis=1)


def _ignoring_input(name: str, constants: dict[str, np.ndarray], inputs: list, nodes_out: list[str]) -> onnx.ModelProto:
    """A graph whose outputs are the constants plus 0 x mean(input): the input still feeds the graph, as
    a real model's does, so no runtime can prune it."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    outputs, initializers = [], [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    for output in nodes_out:
        value = constants[output]
        initializers.append(onnx.numpy_helper.from_array(value, f"{output}_value"))
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Add", [f"{output}_value", "nothing"], [output]))
        else:
            nodes.append(helper.make_node("Identity", [f"{output}_value"], [output]))
        outputs.append(helper.make_tensor_value_info(output, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                     list(value.shape)))
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def known_answer_pose_model(path: Path, bins: np.ndarray) -> Path:
    """RTMPose's signature (input [1, 3, 256, 192], simcc_x [1, K, 384], simcc_y [1, K, 512]; K = 17 for
    body models) with the SimCC outputs peaking at `bins` (K, 2) whatever the input."""
    count = len(bins)
    simcc_x = np.zeros((1, count, int(INPUT_WH[0] * SPLIT)), np.float32)
    simcc_y = np.zeros((1, count, int(INPUT_WH[1] * SPLIT)), np.float32)
    simcc_x[0, np.arange(count), bins[:, 0]] = PEAK_X
    simcc_y[0, np.arange(count), bins[:, 1]] = PEAK_Y
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, INPUT_WH[1], INPUT_WH[0]])]
    onnx.save(_ignoring_input("known_answer_rtmpose", {"simcc_x": simcc_x, "simcc_y": simcc_y}, inputs,
                              ["simcc_x", "simcc_y"]), path)
    return path


def fixed_boxes_detector(path: Path, boxes_xyxy: np.ndarray, scores: np.ndarray) -> Path:
    """OpenMMLab end-to-end YOLOX's signature (input [1, 3, 640, 640]; dets [1, N, 5], labels [1, N]) that
    returns these boxes (letterboxed pixels) and scores whatever the input."""
    dets = np.concatenate([boxes_xyxy, scores[:, None]], axis=1).astype(np.float32)[None]
    labels = np.zeros((1, len(boxes_xyxy)), np.int64)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, DETECTOR_INPUT, DETECTOR_INPUT])]
    onnx.save(_ignoring_input("fixed_boxes_yolox", {"dets": dets, "labels": labels}, inputs, ["dets", "labels"]),
              path)
    return path


def expected_keypoints(box: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Where the peaks sit in the image: the crop is the box grown by 1.25 and widened or heightened to
    the model's 3:4 aspect, centred on the box; a bin maps linearly across it."""
    centre = (box[:2] + box[2:]) / 2
    width, height = (box[2:] - box[:2]) * 1.25
    aspect = INPUT_WH[0] / INPUT_WH[1]
    width, height = (width, width / aspect) if width > height * aspect else (height * aspect, height)
    crop = np.array([width, height])
    return centre - crop / 2 + bins / SPLIT / np.array(INPUT_WH) * crop
