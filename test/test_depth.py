"""Depth Anything and ZoeDepth as the runner builds them, without ROS: every backend against transformers'
depth-estimation pipeline end to end on real images of two aspects, the network input sized by the camera
as the processor sizes it, our preprocessing against the processor's, pixel alignment through the
resizes, the export cache (one export per camera size), remote-code refusal and weights by model id."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import IMAGES, asset

pytest.importorskip("transformers", reason="the depth models load transformers checkpoints")
pytest.importorskip("torch")

from vision_factory.errors import ConfigError  # noqa: E402
from vision_factory.loaded_model import load_default_model  # noqa: E402
from vision_factory.models.transformers_depth import DEPTH_ANYTHING, ZOEDEPTH  # noqa: E402
from vision_factory.tools.stand_in_models import (depth_anything_checkpoint, mean_channel_depth_model,  # noqa: E402
                                            zoedepth_checkpoint)

LOG = logging.getLogger("test")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("depth")
    return {"relative": depth_anything_checkpoint(folder / "depth_anything_relative"),
            "metric": depth_anything_checkpoint(folder / "depth_anything_metric", metric=True, seed=1),
            "zoedepth": zoedepth_checkpoint(folder / "zoedepth")}


def depth_runner(model: str, backend: str, weights: Path, cache: Path, frame_hw: tuple[int, int] | None = None,
                 **values):
    """What a generated <model>_<backend> node builds for these weights and frames of frame_hw (cuda: on
    the CPU here)."""
    device = {"device": "cpu"} if backend == "cuda" else {}
    return load_default_model(model, backend, weights, cache, LOG, frame_hw, **device, **values)


def depth_pipeline(weights: Path):
    """transformers' own pipeline("depth-estimation") on the checkpoint (its processor, network and
    post-processing), on the CPU."""
    from transformers import pipeline

    return pipeline("depth-estimation", model=str(weights), device="cpu")


CASES = [("depth_anything", "relative", "relative"), ("depth_anything", "metric", "metric"),
         ("zoedepth", "zoedepth", "metric")]
# aspect -> (image, (left, top, width, height) of the crop used, or None for the whole image)
IMAGE_ASPECTS = {"3:4": ("bus.jpg", None), "4:3": ("coco_mmpose/000000000785.jpg", (38, 1, 564, 423)),
                 "16:9": ("zidane.jpg", None)}


def real_image(aspect: str) -> np.ndarray:
    """A real photo of that aspect ratio (4:3: the middle of a 640x425 COCO image)."""
    name, crop = IMAGE_ASPECTS[aspect]
    image = cv2.imread(str(asset(IMAGES / name)))
    if crop is not None:
        left, top, width, height = crop
        image = image[top:top + height, left:left + width]
    return np.ascontiguousarray(image)


# Of the pipeline's depth range (max - min). What remains is resampling: Depth Anything's processor resizes
# with torchvision's antialiased bicubic, ours with PIL's (1-2 grey levels apart), and the prediction goes
# back to the frame through OpenCV's bicubic rather than PyTorch's (the same kernel; borders differ).
# Measured on these images, every backend: at most 0.33% (max), 0.019% (mean), correlation 0.999998;
# ZoeDepth (no antialiasing to differ in) within 0.002% (max).
PIPELINE_MAX, PIPELINE_MEAN, PIPELINE_CORRELATION = 0.01, 0.001, 0.9999
BACKEND_TOLERANCE = 1e-3  # backends against each other, of the range: they see the same tensor


@pytest.mark.parametrize("aspect", IMAGE_ASPECTS)
@pytest.mark.parametrize("model, checkpoint, kind", CASES, ids=[c[1] for c in CASES])
def test_every_backend_publishes_what_the_depth_pipeline_does(checkpoints, tmp_path, model, checkpoint, kind,
                                                               aspect) -> None:
    """At the node's default parameters (input size from the camera), on a real image: the depth map at
    the frame's size against transformers' pipeline end to end, on onnx, openvino (forced f32) and cuda
    (PyTorch on the CPU), and the network input the size the processor makes of the frame."""
    image = real_image(aspect)
    estimate = depth_pipeline(checkpoints[checkpoint])
    reference = estimate(Image.fromarray(image[:, :, ::-1].copy()))["predicted_depth"].numpy()
    processor_hw = estimate.image_processor(images=image[:, :, ::-1].copy(), return_tensors="np")[
        "pixel_values"].shape[-2:]
    depth_range = reference.max() - reference.min()
    assert reference.shape == image.shape[:2] and depth_range > 0.01 * np.abs(reference).max()
    results = {}
    for backend in ("onnx", "openvino", "cuda"):
        runner = depth_runner(model, backend, checkpoints[checkpoint], tmp_path, image.shape[:2])
        assert runner.model.input_hw == tuple(processor_hw), backend
        depth = runner.model(image)
        assert depth.kind == kind and depth.values.shape == image.shape[:2] and depth.values.dtype == np.float32
        difference = np.abs(depth.values - reference) / depth_range
        correlation = np.corrcoef(depth.values.ravel(), reference.ravel())[0, 1]
        assert difference.max() <= PIPELINE_MAX and difference.mean() <= PIPELINE_MEAN, (backend, difference.max(),
                                                                                          difference.mean())
        assert correlation >= PIPELINE_CORRELATION, (backend, correlation)
        results[backend] = depth.values
    for backend in ("openvino", "cuda"):
        assert np.abs(results[backend] - results["onnx"]).max() <= BACKEND_TOLERANCE * depth_range, backend


FRAME_SIZES = [(480, 640), (720, 1280), (1080, 810), (540, 960), (240, 320), (333, 500), (1200, 1920), (100, 90)]


@pytest.mark.parametrize("model, checkpoint", [("depth_anything", "relative"), ("zoedepth", "zoedepth")])
def test_the_network_input_is_the_size_the_processor_makes_of_the_frame(checkpoints, model, checkpoint) -> None:
    """input_width / input_height 0: for camera sizes of many shapes, the size our export is made for is the
    size of the checkpoint's processor's output (ZoeDepth: of the frame once padded)."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(str(checkpoints[checkpoint]))
    family = {"depth_anything": DEPTH_ANYTHING, "zoedepth": ZOEDEPTH}[model]
    for frame_hw in FRAME_SIZES:
        options = family.options_for_frame(checkpoints[checkpoint], {"input_width": 0, "input_height": 0}, frame_hw)
        theirs = processor(images=np.zeros((*frame_hw, 3), np.uint8), return_tensors="np")["pixel_values"]
        assert (options["input_height"], options["input_width"]) == theirs.shape[-2:], frame_hw
    explicit = {"input_width": 518, "input_height": 518}
    assert family.options_for_frame(checkpoints[checkpoint], explicit, (720, 1280)) == explicit


@pytest.mark.parametrize("frame_wh", [None, (640, 480), (320, 240)], ids=["shrunk-810x1080", "640x480",
                                                                          "enlarged-320x240"])
@pytest.mark.parametrize("model, checkpoint", [("depth_anything", "relative"), ("zoedepth", "zoedepth")])
def test_preprocessing_matches_the_image_processor(checkpoints, model, checkpoint, frame_wh) -> None:
    """Our numpy / PIL preprocessing against the checkpoint's own processor (torchvision, what the pipeline
    uses), at the size it picks. Depth Anything: PIL's antialiased bicubic against torchvision's, at most 2
    grey levels apart (0.04 after normalisation), mean under 0.001; ZoeDepth (reflection padding,
    corner-aligned bilinear): equal but for float32 rounding of the sample positions (1e-4 measured)."""
    from transformers import AutoImageProcessor

    image = cv2.imread(str(asset(IMAGES / "bus.jpg")))
    if frame_wh is not None:
        image = cv2.resize(image, frame_wh, interpolation=cv2.INTER_AREA)
    processor = AutoImageProcessor.from_pretrained(str(checkpoints[checkpoint]))
    theirs = processor(images=image[:, :, ::-1].copy(), return_tensors="np")["pixel_values"]
    family = {"depth_anything": DEPTH_ANYTHING, "zoedepth": ZOEDEPTH}[model]
    metadata = {"depth_kind": "relative", "image_processing": family.processing.read(checkpoints[checkpoint]).to_json()}
    ours = family.build_model({"model": _FixedShape(-1, -1)}, {"model": metadata},
                              {"input_height": 0, "input_width": 0}, LOG).preprocess(image)
    assert ours.shape == theirs.shape
    difference = np.abs(ours - theirs)
    if model == "zoedepth":
        assert difference.max() < 5e-4, difference.max()
    else:
        assert difference.max() < 0.04 and difference.mean() < 0.001, (difference.max(), difference.mean())


class _FixedShape:
    """A session stand-in that only states its input shape (preprocessing needs nothing else)."""

    def __init__(self, height: int, width: int):
        self.input_name, self.input_shape, self.active = "pixel_values", (1, 3, height, width), "none"


@pytest.mark.parametrize("frame_hw", [(479, 641), (517, 333), (480, 640)])
def test_output_pixel_u_v_is_input_pixel_u_v(tmp_path, frame_hw) -> None:
    """A frame split left/right and top/bottom at odd positions through a model that returns its input's
    mean: the edges come back in the same columns and rows (within 1 px), at the frame's size."""
    model = mean_channel_depth_model(tmp_path / "mean.onnx", 518, 686)
    runner = depth_runner("depth_anything", "onnx", model, tmp_path)
    height, width = frame_hw
    split_column, split_row = width * 3 // 7, height * 4 // 9
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, split_column:] = 200
    frame[split_row:, :, 0] = 100  # blue channel only below the row: a smaller step
    depth = runner.model(frame).values
    assert depth.shape == frame_hw
    middle_row = depth[split_row // 2]
    found_column = np.argmax(middle_row > (middle_row.min() + middle_row.max()) / 2)
    left_column = depth[:, split_column // 2]
    found_row = np.argmax(left_column > (left_column.min() + left_column.max()) / 2)
    assert abs(found_column - split_column) <= 1 and abs(found_row - split_row) <= 1, (found_column, found_row)


def test_an_export_is_cached_and_keyed_by_the_folder_contents(checkpoints, tmp_path) -> None:
    image = cv2.imread(str(asset(IMAGES / "bus.jpg")))
    first = depth_runner("depth_anything", "openvino", checkpoints["relative"], tmp_path)
    second = depth_runner("depth_anything", "openvino", checkpoints["relative"], tmp_path)
    assert first.artifact.exported and not second.artifact.exported
    assert np.array_equal(first.model(image).values, second.model(image).values)
    options = json.loads((first.artifact.path.parent / "metadata.json").read_text())["fields"]["options"]
    assert (options["input_width"], options["input_height"]) == (686, 518)  # sized for 640x480 frames
    changed = tmp_path / "changed"
    depth_anything_checkpoint(changed, seed=5)
    assert depth_runner("depth_anything", "openvino", changed, tmp_path).artifact.exported
    resized = depth_runner("depth_anything", "onnx", checkpoints["relative"], tmp_path, input_width=518,
                           input_height=518)
    assert resized.artifact.exported and resized.model.input_hw == (518, 518)


def test_a_model_sized_by_the_camera_suits_frames_of_its_size_and_is_exported_once_per_size(checkpoints,
                                                                                          tmp_path) -> None:
    """Prepared for 640x480 frames, a Depth Anything model suits 1280x960 (the processor makes 686x518 of
    both) but not 1280x720 (924x518); the 1280x720 export is made once and found in the cache after.
    With the size set, or for a model whose input does not follow the camera (YOLO), every size suits."""
    vga = depth_runner("depth_anything", "onnx", checkpoints["relative"], tmp_path)
    assert vga.frame_hw == (480, 640) and vga.model.input_hw == (518, 686)
    assert vga.suits((480, 640)) and vga.suits((960, 1280)) and not vga.suits((720, 1280))
    wide = depth_runner("depth_anything", "onnx", checkpoints["relative"], tmp_path, (720, 1280))
    assert wide.artifact.exported and wide.model.input_hw == (518, 924) and wide.suits((720, 1280))
    assert not depth_runner("depth_anything", "onnx", checkpoints["relative"], tmp_path, (720, 1280)).artifact.exported
    fixed = depth_runner("depth_anything", "onnx", checkpoints["relative"], tmp_path, input_width=518,
                         input_height=518)
    assert fixed.suits((720, 1280)) and fixed.model.input_hw == (518, 518)


def test_code_shipped_with_a_checkpoint_runs_only_when_trusted(checkpoints, tmp_path) -> None:
    """A folder whose config names its own Python classes: refused without trust_remote_code, and its code
    never runs; trusted, the code runs (the payload is live) but the checkpoint is still refused, being no
    depth_anything model."""
    folder, marker = tmp_path / "remote_code", tmp_path / "payload_ran"
    folder.mkdir()
    (folder / "custom_depth.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import PretrainedConfig\n"
        "class CustomDepthConfig(PretrainedConfig):\n    model_type = 'custom_depth'\n")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "custom_depth", "auto_map": {"AutoConfig": "custom_depth.CustomDepthConfig"}}))
    with pytest.raises(ConfigError, match="trust_remote_code"):
        DEPTH_ANYTHING.load_torch(folder, {"trust_remote_code": False})
    assert not marker.exists()
    with pytest.raises(ConfigError, match="is a custom_depth checkpoint, not depth_anything"):
        DEPTH_ANYTHING.load_torch(folder, {"trust_remote_code": True})
    assert marker.exists()
    with pytest.raises(ConfigError, match="is a zoedepth checkpoint, not depth_anything"):
        DEPTH_ANYTHING.load_torch(checkpoints["zoedepth"], {})


def test_weights_by_model_id_go_through_the_hub_and_fail_with_one_line_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ZOEDEPTH.weights_problem("Intel/zoedepth-nyu-kitti") == ""
    assert "neither a transformers model folder" in ZOEDEPTH.weights_problem(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="could not be downloaded from the Hugging Face Hub") as error:
        ZOEDEPTH.resolve_weights("Intel/zoedepth-nyu-kitti", tmp_path)
    assert "\n" not in str(error.value)


def test_an_onnx_file_without_metadata_is_published_as_relative(tmp_path, caplog) -> None:
    import onnx

    model = onnx.load(str(mean_channel_depth_model(tmp_path / "mean.onnx", 518, 686)))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with caplog.at_level(logging.WARNING):
        runner = depth_runner("depth_anything", "onnx", tmp_path / "bare.onnx", tmp_path)
    assert runner.model.kind == "relative" and "does not say whether it predicts metric depth" in caplog.text
