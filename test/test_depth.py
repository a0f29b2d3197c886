"""Depth Anything and ZoeDepth as the runner builds them, without ROS: onnx and openvino against the
PyTorch reference on a real image, our preprocessing against transformers' image processor, pixel
alignment through the resizes, the export cache, remote-code refusal and weights by model id."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import IMAGES, asset

pytest.importorskip("transformers", reason="the depth models load transformers checkpoints")
pytest.importorskip("torch")
import torch  # noqa: E402

from vision_factory.errors import ConfigError  # noqa: E402
from vision_factory.loaded_model import load_default_model  # noqa: E402
from vision_factory.models.transformers_depth import DEPTH_ANYTHING, ZOEDEPTH  # noqa: E402
from vision_factory.tools.stand_in_models import (depth_anything_checkpoint, mean_channel_depth_model,  # noqa: E402
                                            zoedepth_checkpoint)

LOG = logging.getLogger("test")
RELATIVE_TOLERANCE = 1e-3  # of the reference's largest value, per pixel


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("depth")
    return {"relative": depth_anything_checkpoint(folder / "depth_anything_relative"),
            "metric": depth_anything_checkpoint(folder / "depth_anything_metric", metric=True, seed=1),
            "zoedepth": zoedepth_checkpoint(folder / "zoedepth")}


def depth_runner(model: str, backend: str, weights: Path, cache: Path, **values):
    """What a generated <model>_<backend> node builds for these weights (cuda: on the CPU here)."""
    device = {"device": "cpu"} if backend == "cuda" else {}
    return load_default_model(model, backend, weights, cache, LOG, **device, **values)


def torch_reference(weights: Path, blob: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """transformers' own model on the same input tensor, resized back to the frame as the node does."""
    from transformers import AutoModelForDepthEstimation

    network = AutoModelForDepthEstimation.from_pretrained(str(weights)).eval()
    with torch.inference_mode():
        predicted = network(pixel_values=torch.from_numpy(blob)).predicted_depth[0].numpy()
    return cv2.resize(predicted, size_hw[::-1], interpolation=cv2.INTER_LINEAR)


CASES = [("depth_anything", "relative", "relative"), ("depth_anything", "metric", "metric"),
         ("zoedepth", "zoedepth", "metric")]


@pytest.mark.parametrize("model, checkpoint, kind", CASES, ids=[c[1] for c in CASES])
def test_every_backend_matches_the_pytorch_reference_on_a_real_image(checkpoints, tmp_path, model, checkpoint,
                                                                      kind) -> None:
    image = cv2.imread(str(asset(IMAGES / "bus.jpg")))
    runners = {backend: depth_runner(model, backend, checkpoints[checkpoint], tmp_path) for backend in
               ("cuda", "onnx", "openvino")}
    reference = torch_reference(checkpoints[checkpoint], runners["onnx"].model.preprocess(image), image.shape[:2])
    assert reference.std() > 0.01 * np.abs(reference).max()  # structure to compare, not a constant
    for backend, runner in runners.items():
        depth = runner.model(image)
        assert depth.kind == kind and depth.values.shape == image.shape[:2] and depth.values.dtype == np.float32
        error = np.abs(depth.values - reference).max() / np.abs(reference).max()
        assert error <= RELATIVE_TOLERANCE, (backend, error)


@pytest.mark.parametrize("frame_wh", [None, (640, 480)], ids=["shrunk-810x1080", "enlarged-640x480"])
def test_preprocessing_matches_the_depth_anything_image_processor(frame_wh) -> None:
    """Our numpy resize / rescale / normalise against transformers' DPT processor (PIL bicubic) configured
    as the Depth Anything checkpoints' preprocessor_config.json is (ImageNet mean and std, bicubic), at the
    same size. The resamplers differ in rounding and edge handling: mean difference within 0.04 (about 2
    grey levels), 99% of values within 0.2."""
    from transformers import DPTImageProcessorPil

    image = cv2.imread(str(asset(IMAGES / "bus.jpg")))
    if frame_wh is not None:
        image = cv2.resize(image, frame_wh, interpolation=cv2.INTER_AREA)
    processor = DPTImageProcessorPil(size={"height": 518, "width": 686}, keep_aspect_ratio=False,
                                     ensure_multiple_of=14, do_pad=False, resample=3,
                                     image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    theirs = processor(images=image[:, :, ::-1].copy(), return_tensors="np")["pixel_values"]
    ours = DEPTH_ANYTHING.build_model({"model": _FixedShape(518, 686)}, {"model": {"depth_kind": "relative"}},
                                      {"input_height": 518, "input_width": 686}, LOG).preprocess(image)
    assert ours.shape == theirs.shape == (1, 3, 518, 686)
    difference = np.abs(ours - theirs)
    assert difference.mean() < 0.04 and np.percentile(difference, 99) < 0.2, (difference.mean(), difference.max())


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
    assert "input_width" in json.loads((first.artifact.path.parent / "metadata.json").read_text())["fields"]["options"]
    changed = tmp_path / "changed"
    depth_anything_checkpoint(changed, seed=5)
    assert depth_runner("depth_anything", "openvino", changed, tmp_path).artifact.exported
    resized = depth_runner("depth_anything", "onnx", checkpoints["relative"], tmp_path, input_width=518)
    assert resized.artifact.exported and resized.model.input_hw == (518, 518)


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
