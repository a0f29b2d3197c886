"""The accuracy report's metrics on results whose answers are known, and the report on the real sample."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ASSETS, FP32_ONNX, IMAGES, asset
from vision_factory.accuracy import (compare, depth_error, detection_agreement, keypoint_error, mask_agreement,
                                     person_ap50, text_agreement)
from vision_factory.depth import DepthMap
from vision_factory.detections import Detections
from vision_factory.generated_text import GeneratedText
from vision_factory.masks import Segmentation
from vision_factory.poses import Poses, Skeleton

LABELS = ("person", "bicycle", "car", "motorcycle", "airplane", "bus")
PERSON, CAR, BUS = 0, 2, 5


def detections(*boxes: tuple[int, float, tuple[float, float, float, float]]) -> Detections:
    """Detections of (class id, score, x1 y1 x2 y2) rows."""
    return Detections(np.array([b[2] for b in boxes], np.float32).reshape(-1, 4),
                      np.array([b[1] for b in boxes], np.float32), np.array([b[0] for b in boxes], np.int64), LABELS)


def test_detections_recovered_lost_and_added() -> None:
    reference = detections((PERSON, 0.9, (0, 0, 100, 200)), (PERSON, 0.8, (300, 0, 400, 200)),
                           (BUS, 0.7, (500, 0, 900, 300)))
    candidate = detections((PERSON, 0.85, (5, 5, 100, 200)),  # the first person, moved a little
                           (CAR, 0.7, (500, 0, 900, 300)),  # the bus, called a car: lost and added
                           (PERSON, 0.3, (0, 400, 50, 500)))  # nothing of the reference's: added
    agreement = detection_agreement(reference, candidate)
    assert (agreement.reference, agreement.recovered, agreement.lost, agreement.added) == (3, 1, 2, 2)
    assert agreement.recovered_share == pytest.approx(1 / 3)
    assert agreement.max_score_difference == pytest.approx(0.05, abs=1e-6)
    total = agreement + detection_agreement(reference, reference)
    assert (total.reference, total.recovered, total.added) == (6, 4, 2)
    assert total.mean_score_difference == pytest.approx(0.05 / 4, abs=1e-6)


def test_one_candidate_box_stands_for_one_reference_box() -> None:
    reference = detections((PERSON, 0.9, (0, 0, 100, 200)), (PERSON, 0.8, (0, 0, 100, 190)))
    candidate = detections((PERSON, 0.9, (0, 0, 100, 195)))
    agreement = detection_agreement(reference, candidate)
    assert (agreement.recovered, agreement.lost, agreement.added) == (1, 1, 0)
    # Half overlapping is not enough: IoU 1/3.
    assert detection_agreement(reference, detections((PERSON, 0.9, (50, 0, 150, 200)))).recovered == 0
    assert detection_agreement(Detections.empty(LABELS), Detections.empty(LABELS)).recovered_share == 1.0


def coco_truth(boxes: dict[int, list[tuple[float, float, float, float]]]) -> dict:
    """A COCO annotation file's contents with person boxes (x, y, w, h) per image id."""
    annotations = [{"id": i, "image_id": image, "category_id": 1, "bbox": list(box), "area": box[2] * box[3],
                    "iscrowd": 0} for i, (image, box) in enumerate(((im, b) for im, bs in boxes.items() for b in bs), 1)]
    return {"images": [{"id": image, "width": 640, "height": 480} for image in boxes],
            "categories": [{"id": 1, "name": "person"}], "annotations": annotations}


def test_person_ap50_as_coco_scores_it() -> None:
    people = {1: [(10, 10, 100, 200), (200, 10, 100, 200)], 2: [(10, 10, 50, 100), (300, 50, 80, 160)]}
    truth = coco_truth(people)

    def found(image: int, extra: list = ()) -> Detections:
        return detections(*[(PERSON, 0.9, (x, y, x + w, y + h)) for x, y, w, h in people[image]], *extra)

    assert person_ap50({1: found(1), 2: found(2)}, truth) == pytest.approx(1.0)
    # A false person scored above every true one: precision 1/2, 2/3, 3/4, 4/5 as the true ones come; COCO
    # takes the best precision at or beyond each recall: 0.8 at every recall.
    ghost = [(PERSON, 0.95, (400, 300, 500, 450))]
    assert person_ap50({1: found(1, ghost), 2: found(2)}, truth) == pytest.approx(0.8)
    # Other classes do not count; half the people found: recall 0.5 at most.
    assert person_ap50({1: found(1, [(CAR, 0.99, (400, 300, 500, 450))]), 2: Detections.empty(LABELS)},
                       truth) == pytest.approx(0.5, abs=0.01)
    assert person_ap50({1: Detections.empty(LABELS), 2: Detections.empty(LABELS)}, truth) == 0.0


def poses(boxes: np.ndarray, keypoints: np.ndarray) -> Poses:
    return Poses(boxes.astype(np.float32), np.ones(len(boxes), np.float32), keypoints.astype(np.float32),
                 np.ones(keypoints.shape[:2], np.float32), Skeleton("test", ("a", "b", "c"), ()))


def test_keypoint_distances_of_the_people_both_found() -> None:
    boxes = np.array([[0, 0, 100, 200], [300, 0, 400, 200]])
    keypoints = np.array([[[10, 10], [20, 20], [30, 30]], [[310, 10], [320, 20], [330, 30]]])
    moved = keypoints + np.array([3.0, 4.0])
    moved[0, 2] = np.nan  # left out by the candidate: not a distance
    error = keypoint_error(poses(boxes, keypoints), poses(boxes[:1], moved[:1]))
    assert (error.people, error.found) == (2, 1)
    assert error.distances == (5.0, 5.0) and error.mean_px == 5.0 and error.max_px == 5.0


def test_depth_error_relative_to_the_maps_scale() -> None:
    reference = DepthMap(np.linspace(1.0, 3.0, 100, dtype=np.float32).reshape(10, 10), "metric")
    shifted = DepthMap(reference.values + 0.02, "metric")
    error = depth_error(reference, shifted) + depth_error(reference, reference)
    assert error.relative == pytest.approx((0.01, 0.0), abs=1e-6)
    assert error.max_of_range == pytest.approx(0.01, abs=1e-6)
    with pytest.raises(TypeError, match="no accuracy comparison for str"):
        compare("a", "b")


def segmentation(mask: np.ndarray, score: float) -> Segmentation:
    """One prompt's answer: its mask and predicted IoU."""
    return Segmentation(mask.astype(np.uint16), Detections(np.zeros((1, 4), np.float32), np.array([score], np.float32),
                                                           np.zeros(1, np.int64), ("point",)))


def test_masks_agree_prompt_by_prompt() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:6, 2:6] = True  # 16 pixels
    grown = mask.copy()
    grown[6, 2:6] = True  # 20 pixels, 16 shared
    empty = np.zeros((10, 10), bool)
    reference = [segmentation(mask, 0.9), segmentation(empty, 0.5)]
    candidate = [segmentation(grown, 0.8), segmentation(empty, 0.5)]
    agreement = compare(reference, candidate) + mask_agreement(reference[:1], reference[:1])
    assert agreement.ious == pytest.approx((0.8, 1.0, 1.0))  # two empty masks agree
    assert agreement.min_iou == pytest.approx(0.8) and agreement.mean_iou == pytest.approx(2.8 / 3)
    assert agreement.max_score_difference == pytest.approx(0.1)
    with pytest.raises(ValueError):  # a prompt answered by one side only is a bug of the caller, not a 0
        mask_agreement(reference, candidate[:1])


def test_generated_texts_equal_or_how_alike() -> None:
    caption = GeneratedText.text_only("caption", "a red bus on a street")
    agreement = (compare(caption, GeneratedText.text_only("caption", "a red bus on the street"))
                 + text_agreement(caption, caption))
    assert agreement.same == (False, True) and agreement.same_share == 0.5
    assert agreement.similarity == pytest.approx((5 / 6, 1.0))


def test_the_report_of_yolo_on_openvino_at_each_precision(tmp_path) -> None:
    """The command end to end on the real sample: fp32 is the reference, auto runs what the CPU chose."""
    out, weights = tmp_path / "report", asset(FP32_ONNX)
    asset(IMAGES / "coco_mmpose" / "test_coco.json")
    run = subprocess.run([sys.executable, "-m", "vision_factory.cli", "accuracy", "--model", "yolo", "--backend",
                          "openvino", "--weights", str(weights), "--precisions", "fp32,auto", "--assets", str(ASSETS),
                          "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = json.loads((out / "accuracy.json").read_text())["rows"]
    assert "| precision | running | frames |" in run.stdout and (out / "accuracy.md").read_text() in run.stdout
    fp32, auto = rows
    assert fp32["running"] == "CPU (fp32)" and auto["running"].startswith("CPU (auto: ")
    assert fp32["frames"] == 11 and (fp32["ap50_images"], fp32["ap50_people"]) == (4, 14)
    assert (fp32["recovered"], fp32["lost"], fp32["added"], fp32["max_score_diff"]) == (1.0, 0, 0, 0.0)
    assert fp32["fp32_detections"] >= 50 and 0.5 < fp32["person_ap50"] <= 1.0
    assert auto["recovered"] >= 0.9 and abs(auto["person_ap50"] - fp32["person_ap50"]) <= 0.05


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_quantize_builds_the_int8_network_once_and_reports_it_against_fp32(tmp_path, backend) -> None:
    """Calibrated on the bag (whose frames are also the report's video frames: the sample is that small)."""
    weights, bag = asset(FP32_ONNX), asset(ASSETS / "rosbags" / "mmpose_street_demo_5f")
    command = [sys.executable, "-m", "vision_factory.cli", "quantize", "--backend", backend, "--model", "yolo",
               "--weights", str(weights),
               "--calibration-data", str(bag), "--assets", str(ASSETS), "--out", str(tmp_path / "report"),
               "--cache-dir", str(tmp_path / "cache")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    fp32, int8 = json.loads((tmp_path / "report" / "accuracy.json").read_text())["rows"]
    assert "to int8" in first.stderr and "on 5 calibration runs" in first.stderr
    # Measured: onnx 96.2% recovered (5 of 131 lost; 93.9% before its input layer stayed in fp32), openvino (NNCF)
    # 97.0% (4 lost), the lost ones near the 0.25 threshold; person AP50 0.995 against 1.0 for both. The aim of
    # issue 15 is >= 95%.
    assert int8["precision"] == "int8" and int8["recovered"] >= 0.95
    assert abs(int8["person_ap50"] - fp32["person_ap50"]) <= 0.01
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "quantising" not in again.stderr and "loaded the cached int8" in again.stderr


def bf16_reports(cases: dict[str, dict[str, str]], tmp_path) -> dict[str, list[dict]]:
    """Per model, the report's lines (fp32, bf16) of its openvino node with these weights and parameters (every
    other parameter at its default)."""
    from vision_factory.manifest import load_manifest
    from vision_factory.parameters import node_parameters
    from vision_factory.tools.accuracy_report import report

    lines = {}
    for model, weights in cases.items():
        manifest = load_manifest(model)
        backend = manifest.backend("openvino")
        values = {**{p.name: p.default for p in node_parameters(manifest, backend)}, **weights,
                  "cache_dir": str(tmp_path / "cache")}
        lines[model] = report(manifest, backend, values, ["bf16"], ASSETS)
    return lines


def test_the_report_compares_keypoints_and_depth_too(tmp_path) -> None:
    """The pose and depth paths of the report, on stand-ins (no real RTMPose or depth weights here): openvino
    bf16 against fp32 moves keypoints and depth a little, and not at all at fp32."""
    pytest.importorskip("transformers")
    from vision_factory.tools.stand_in_models import batched_pose_model, depth_anything_checkpoint

    detector = asset(ASSETS / "models" / "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx")
    cases = {"rtmpose": {"model": str(batched_pose_model(tmp_path / "pose.onnx")), "detector_model": str(detector)},
             "depth_anything": {"model": str(depth_anything_checkpoint(tmp_path / "depth"))}}
    lines = bf16_reports(cases, tmp_path)
    (pose_fp32, pose_bf16), (depth_fp32, depth_bf16) = lines["rtmpose"], lines["depth_anything"]
    assert pose_fp32["fp32_people"] == pose_fp32["people_found"] >= 14 and pose_fp32["keypoint_max_px"] == 0
    assert pose_bf16["people_found"] >= pose_fp32["fp32_people"] - 2 and 0 < pose_bf16["keypoint_mean_px"] < 20
    assert depth_fp32["depth_mean_relative"] == 0 and 0 < depth_bf16["depth_mean_relative"] < 0.1


def test_the_report_compares_masks_and_generated_text_too(tmp_path) -> None:
    """The segmentation and text paths of the report, on stand-ins (no real SAM or Florence-2 weights here):
    SAM prompted with a 3 x 3 point grid on every frame, Florence-2 captioning each; fp32 agrees with itself
    exactly, bf16 within what its rounding moves."""
    pytest.importorskip("transformers")
    from vision_factory.tools.stand_in_models import florence2_checkpoint, sam_checkpoint

    asset(IMAGES / "coco_mmpose" / "test_coco.json")  # the report's sample: skips with its path when absent
    cases = {"sam": {"model": str(sam_checkpoint(tmp_path / "sam"))},
             "florence2": {"model": str(florence2_checkpoint(tmp_path / "florence2")), "task": "caption",
                           "max_new_tokens": 8}}
    lines = bf16_reports(cases, tmp_path)
    (sam_fp32, sam_bf16), (text_fp32, text_bf16) = lines["sam"], lines["florence2"]
    assert sam_fp32["prompts"] == sam_bf16["prompts"] == 9 * sam_fp32["frames"]
    assert sam_fp32["mask_min_iou"] == 1.0 and sam_fp32["max_score_diff"] == 0.0
    # Measured: mean IoU 0.994, the worst mask 0.981 (99 prompts), predicted IoU within 0.002.
    assert 0.9 < sam_bf16["mask_mean_iou"] < 1.0 and sam_bf16["running"].startswith("CPU (bf16")
    assert text_fp32["texts_same"] == text_fp32["text_similarity"] == 1.0
    # Measured: 11 of 11 captions equal at bf16 (the stand-in's random weights answer nearly alike for any image).
    assert text_bf16["text_similarity"] >= 0.5 and text_bf16["running"].startswith("CPU (bf16")
