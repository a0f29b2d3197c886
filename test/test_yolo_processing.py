"""YOLO pre- and postprocessing against ultralytics' own implementation, on the real images."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import INT8_ONNX, IMAGES, asset
from vision_factory.input_tensor import planar_blob
from vision_factory.letterbox import letterbox
from vision_factory.models.yolo import YoloDetector
from vision_factory.nms import class_aware_nms

torch = pytest.importorskip("torch", reason="the ultralytics reference needs torch")
from ultralytics.data.augment import LetterBox  # noqa: E402
from ultralytics.utils import nms as ultralytics_nms  # noqa: E402
from ultralytics.utils import ops  # noqa: E402

SYNTHETIC_SHAPES = [(480, 640), (333, 517), (641, 640), (640, 641), (7, 3000), (1080, 810)]


class FixedSession:
    """A session double with the real model's signature, returning a stored output."""

    input_name, input_shape, active = "images", (1, 3, 640, 640), "test"

    def __init__(self, output: np.ndarray | None = None):
        self.output = output

    def run(self, inputs):
        return [self.output]


def images() -> list[np.ndarray]:
    real = [cv2.imread(str(asset(IMAGES / name))) for name in ("bus.jpg", "zidane.jpg")]
    rng = np.random.default_rng(1)
    return real + [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in SYNTHETIC_SHAPES]


@pytest.mark.parametrize("index", range(2 + len(SYNTHETIC_SHAPES)))
def test_letterbox_is_pixel_identical_to_ultralytics(index: int) -> None:
    image = images()[index]
    ours, placement = letterbox(image, (640, 640))
    theirs = LetterBox((640, 640), auto=False, stride=32)(image=image)
    np.testing.assert_array_equal(ours, theirs)
    # the inverse maps boxes back exactly as ultralytics' scale_boxes does
    boxes = np.random.default_rng(index).uniform(0, 640, (20, 4)).astype(np.float32)
    boxes[:, 2:] = boxes[:, :2] + np.abs(boxes[:, 2:] - boxes[:, :2])
    expected = ops.scale_boxes((640, 640), torch.from_numpy(boxes.copy()), image.shape[:2]).numpy()
    np.testing.assert_allclose(placement.boxes_to_source(boxes), expected, atol=1e-3)


def test_top_left_letterbox_pads_right_and_bottom_only() -> None:
    image = np.full((100, 200, 3), 9, np.uint8)
    canvas, placement = letterbox(image, (416, 416), center=False)
    assert placement.pad_xy == (0, 0) and placement.resized_wh == (416, 208)
    assert (canvas[:208] == 9).all() and (canvas[208:] == 114).all()


def test_preprocess_matches_ultralytics_tensor() -> None:
    image = images()[0]
    blob, _ = YoloDetector(FixedSession(), {}, {"imgsz": 640}).preprocess(image)
    reference = LetterBox((640, 640), auto=False)(image=image)[:, :, ::-1].transpose(2, 0, 1)[None] / 255.0
    assert blob.dtype == np.float32 and blob.shape == (1, 3, 640, 640)
    np.testing.assert_allclose(blob, reference, atol=1e-6)


def test_nms_suppresses_within_a_class_only() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    keep = class_aware_nms(boxes, scores, np.array([0, 0, 1, 0]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2, 3]
    assert class_aware_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.5, max_detections=2).tolist() == [0, 2]
    assert class_aware_nms(boxes[:0], scores[:0], np.zeros(0, int), 0.5).size == 0


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
@pytest.mark.parametrize("conf, iou, classes", [(0.25, 0.7, ""), (0.05, 0.45, ""), (0.1, 0.7, "person,0,27")])
def test_postprocess_matches_ultralytics_nms_on_the_real_model_output(name, conf, iou, classes) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(asset(INT8_ONNX)), providers=["CPUExecutionProvider"])
    image = cv2.imread(str(asset(IMAGES / name)))
    metadata = {m: v for m, v in session.get_modelmeta().custom_metadata_map.items()}
    detector = YoloDetector(FixedSession(), metadata, {"imgsz": 640})
    blob, placement = detector.preprocess(image)
    raw = session.run(None, {"images": blob})[0]
    detector.session.output = raw
    ours = detector(image, conf, iou, classes, 300)

    class_ids = detector.parse_classes(classes)
    reference = ultralytics_nms.non_max_suppression(
        torch.from_numpy(raw), conf, iou, classes=None if class_ids is None else class_ids.tolist())[0].numpy()
    reference[:, :4] = ops.scale_boxes((640, 640), torch.from_numpy(reference[:, :4]), image.shape[:2]).numpy()
    assert len(ours) == len(reference) > 0
    np.testing.assert_allclose(ours.boxes_xyxy, reference[:, :4], atol=1e-3)
    np.testing.assert_allclose(ours.scores, reference[:, 4], atol=1e-6)
    np.testing.assert_array_equal(ours.class_ids, reference[:, 5].astype(int))
    assert ours.labels[0] == "person" and ours.class_name(5) == "bus"


def test_classes_accepts_names_and_ids_and_refuses_unknown_names_and_ids() -> None:
    detector = YoloDetector(FixedSession(), {"names": "{0: 'person', 1: 'bicycle', 2: 'car'}"}, {})
    assert detector.parse_classes("") is None
    assert detector.parse_classes(" car, 0 ").tolist() == [2, 0]
    assert detector.option_problem("classes", "person") == ""
    assert "unknown class 'dragon'" in detector.option_problem("classes", "person,dragon")
    assert detector.option_problem("classes", "2") == ""
    assert "class id 999 in classes is not one of the model's 3 classes (0 to 2)" in \
        detector.option_problem("classes", "0,999")


@pytest.mark.parametrize("row, value", [(4, np.nan), (0, np.inf), (83, -np.inf)])
def test_non_finite_model_output_is_an_error_not_detections(row: int, value: float) -> None:
    output = np.zeros((1, 84, 8400), np.float32)
    output[0, row, 10] = value
    detector = YoloDetector(FixedSession(output), {}, {"imgsz": 640})
    with pytest.raises(ValueError, match="the model output contains NaN or Inf"):
        detector(np.zeros((480, 640, 3), np.uint8))


@pytest.mark.parametrize("reverse_channels", [False, True])
@pytest.mark.parametrize("scale", [1.0, 1.0 / 255.0])
def test_planar_blob_equals_the_transposed_image_bit_for_bit(reverse_channels: bool, scale: float) -> None:
    image = np.random.default_rng(3).integers(0, 256, (333, 517, 3), dtype=np.uint8)
    channels = image[:, :, ::-1] if reverse_channels else image
    expected = (channels.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(scale))
    blob = planar_blob(image, scale, reverse_channels)
    assert blob.shape == (1, 3, 333, 517) and blob.dtype == np.float32 and blob.flags.c_contiguous
    np.testing.assert_array_equal(blob, expected)
