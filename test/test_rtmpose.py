"""RTMPose top-down pose as the runner builds it, without ROS: known-answer models whose SimCC peaks must
land where the person box's affine transform puts them, the real YOLOX person detector against COCO
ground truth, onnx / openvino parity, YOLO as the detector, the ONNX Runtime GPU mapping of cuda, and
weights given as URLs."""
from __future__ import annotations

import http.server
import json
import logging
import threading
import zipfile
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ASSETS, INT8_ONNX, asset
from reference import annotated_people, iou

pytest.importorskip("rtmlib", reason="the rtmpose model uses rtmlib's processing")
pytest.importorskip("onnx")

from vision_factory.backends import onnxruntime_session  # noqa: E402
from vision_factory.backends.onnxruntime_session import OnnxRuntimeSession  # noqa: E402
from vision_factory.backends.openvino_session import OpenVinoSession, convert_onnx  # noqa: E402
from vision_factory.errors import ConfigError  # noqa: E402
from vision_factory.generator import plan_package  # noqa: E402
from vision_factory.loaded_model import load_default_model  # noqa: E402
from vision_factory.manifest import load_manifest  # noqa: E402
from vision_factory.models import person_detector, rtmpose  # noqa: E402
from vision_factory.models.person_detector import YoloPersons, YoloxPersons  # noqa: E402
from vision_factory.models.rtmpose import PoseEstimator, skeleton_for  # noqa: E402
from vision_factory.tools.stand_in_models import (KEYPOINTS, PEAK_X, PEAK_Y, expected_keypoints,  # noqa: E402
                                            fixed_boxes_detector, known_answer_pose_model, peak_bins)

DETECTOR = ASSETS / "models" / "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx"
COCO = ASSETS / "images" / "coco_mmpose"
IMAGE_HW = (480, 640)
BOXES = np.array([
    [200, 100, 300, 400],    # tall person
    [50, 200, 450, 300],     # lying down: wider than tall
    [0, 0, 80, 120],         # at the top-left corner
    [560, 380, 640, 480],    # at the bottom-right corner
    [-30, 300, 60, 520],     # partly outside the image: the detector clips it to [0, 300, 60, 480]
    [310.5, 20.25, 333.75, 61.5],  # small, fractional
], np.float32)
BOX_SCORES = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7], np.float32)
LOG = logging.getLogger("test")


def clipped(boxes: np.ndarray) -> np.ndarray:
    return np.stack([boxes[:, 0].clip(0, IMAGE_HW[1]), boxes[:, 1].clip(0, IMAGE_HW[0]),
                     boxes[:, 2].clip(0, IMAGE_HW[1]), boxes[:, 3].clip(0, IMAGE_HW[0])], axis=1)


@pytest.fixture(scope="module")
def known_answer(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """(pose model, fixed-boxes detector, the pose model's peak bins)."""
    folder, bins = tmp_path_factory.mktemp("pose"), peak_bins()
    return (known_answer_pose_model(folder / "rtmpose.onnx", bins),
            fixed_boxes_detector(folder / "detector.onnx", BOXES, BOX_SCORES), bins)


def pose_runner(backend: str, model: Path, detector: Path, cache: Path):
    """What a generated rtmpose_<backend> node builds for these weights (other parameters at defaults)."""
    return load_default_model("rtmpose", backend, model, cache, LOG, detector_model=str(detector))


def frame_options(runner, **values) -> dict:
    return runner.frame_options({**plan_package("rtmpose", runner.backend.name).defaults(), **values})


def test_known_answer_keypoints_land_within_one_pixel(known_answer) -> None:
    path, _, bins = known_answer
    estimator = PoseEstimator(OnnxRuntimeSession(path, {"execution_provider": "cpu"}))
    image = np.random.default_rng(1).integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
    keypoints, scores = estimator(image, BOXES)
    assert keypoints.shape == (len(BOXES), KEYPOINTS, 2) and scores.shape == (len(BOXES), KEYPOINTS)
    for box, found in zip(BOXES.astype(np.float64), keypoints):
        error = np.abs(found - expected_keypoints(box, bins)).max()
        assert error <= 1.0, (box, error)
    assert np.allclose(scores, (PEAK_X + PEAK_Y) / 2)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_built_model_detects_then_places_every_keypoint(known_answer, backend, tmp_path) -> None:
    """Through load_model, as a node builds it: the detector's boxes (clipped, best first) and, in each,
    the keypoints where the affine transform of that box puts the peaks."""
    pose, detector, bins = known_answer
    runner = pose_runner(backend, pose, detector, tmp_path)
    assert isinstance(runner.model.detector, YoloxPersons) and set(runner.sessions) == {"model", "detector_model"}
    image = np.random.default_rng(2).integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
    poses = runner.model(image, **frame_options(runner))
    assert np.allclose(poses.boxes_xyxy, clipped(BOXES)) and np.allclose(poses.scores, BOX_SCORES)
    assert poses.skeleton.name == "coco17" and poses.skeleton.keypoint_names[0] == "nose"
    for box, found in zip(clipped(BOXES).astype(np.float64), poses.keypoints):
        assert np.abs(found - expected_keypoints(box, bins)).max() <= 1.0, box


@pytest.mark.parametrize("keypoints, skeleton", [(133, "coco133"), (21, "hand21")])
def test_wholebody_and_hand_models_run_through_the_same_code(known_answer, tmp_path, keypoints, skeleton) -> None:
    _, detector, _ = known_answer
    bins = peak_bins(keypoints)
    pose = known_answer_pose_model(tmp_path / f"rtmpose_{keypoints}.onnx", bins)
    runner = pose_runner("onnx", pose, detector, tmp_path)
    poses = runner.model(np.zeros((*IMAGE_HW, 3), np.uint8), **frame_options(runner))
    assert poses.skeleton.name == skeleton and poses.keypoints.shape == (len(BOXES), keypoints, 2)
    for box, found in zip(clipped(BOXES).astype(np.float64), poses.keypoints):
        assert np.abs(found - expected_keypoints(box, bins)).max() <= 1.0, box


def test_frame_options_bound_the_poses_and_hide_weak_keypoints(known_answer, tmp_path) -> None:
    pose, detector, _ = known_answer
    runner = pose_runner("onnx", pose, detector, tmp_path)
    image = np.zeros((*IMAGE_HW, 3), np.uint8)
    assert len(runner.model(image, **frame_options(runner, max_poses=2))) == 2
    assert len(runner.model(image, **frame_options(runner, detector_confidence_threshold=0.82))) == 3
    weak = runner.model(image, **frame_options(runner, keypoint_score_threshold=0.81))
    assert np.isnan(weak.keypoints).all() and np.allclose(weak.keypoint_scores, 0.8)  # scores are kept


def test_no_person_no_pose(known_answer, tmp_path) -> None:
    pose, detector, _ = known_answer
    runner = pose_runner("onnx", pose, detector, tmp_path)
    poses = runner.model(np.zeros((*IMAGE_HW, 3), np.uint8), **frame_options(runner, detector_confidence_threshold=1.0))
    assert len(poses) == 0 and poses.keypoints.shape == (0, KEYPOINTS, 2)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_real_person_detector_finds_the_annotated_people(backend, tmp_path) -> None:
    """Every COCO person with >= 10 annotated keypoints is found with IoU >= 0.7."""
    truth = json.loads(asset(COCO / "test_coco.json").read_text())
    if backend == "onnx":
        session = OnnxRuntimeSession(asset(DETECTOR), {"execution_provider": "cpu"})
    else:
        convert_onnx(asset(DETECTOR), tmp_path / "yolox.xml", {}, None)
        session = OpenVinoSession(tmp_path / "yolox.xml", {"device": "CPU"})
    detector = person_detector.person_detector(session, {})
    assert isinstance(detector, YoloxPersons)
    checked = 0
    for image_info in truth["images"]:
        boxes, _ = detector(cv2.imread(str(COCO / image_info["file_name"])), score_threshold=0.3)
        for person in annotated_people(truth, image_info["id"]):
            best = max((iou(person, box) for box in boxes), default=0.0)
            assert best >= 0.7, (image_info["file_name"], person, best)
            checked += 1
    assert checked == 12


def test_onnx_and_openvino_runners_give_the_same_poses(known_answer, tmp_path) -> None:
    """The real detector and the known-answer pose model on a COCO image, on both backends: same boxes
    (within 1 px) and the same keypoints (within 1 px)."""
    pose, _, _ = known_answer
    image = cv2.imread(str(asset(COCO / "000000000785.jpg")))
    results = [pose_runner(backend, pose, asset(DETECTOR), tmp_path / backend).model(image) for backend in
               ("onnx", "openvino")]
    assert len(results[0]) >= 1 and len(results[0]) == len(results[1])
    assert np.abs(results[0].boxes_xyxy - results[1].boxes_xyxy).max() <= 1.0
    assert np.abs(results[0].keypoints - results[1].keypoints).max() <= 1.0


def test_a_yolo_model_serves_as_the_person_detector(known_answer, tmp_path) -> None:
    """An ultralytics export (class names in its metadata) is run as YOLO, keeping persons only: it finds
    the annotated people of the COCO images too."""
    pose, _, _ = known_answer
    runner = pose_runner("onnx", pose, asset(INT8_ONNX), tmp_path)
    assert isinstance(runner.model.detector, YoloPersons)
    truth = json.loads(asset(COCO / "test_coco.json").read_text())
    found = []
    for image_info in truth["images"]:
        poses = runner.model(cv2.imread(str(COCO / image_info["file_name"])), **frame_options(runner))
        found += [max((iou(person, box) for box in poses.boxes_xyxy), default=0.0)
                  for person in annotated_people(truth, image_info["id"])]
    assert len(found) == 12 and min(found) >= 0.6, found


def test_cuda_runs_onnxruntime_and_falls_back_to_cpu_with_one_warning(known_answer, tmp_path, caplog) -> None:
    """RTMPose's cuda backend is ONNX Runtime's CUDA provider (not PyTorch); without it, CPU and a warning."""
    pose, detector, _ = known_answer
    backend = load_manifest("rtmpose").backend("cuda")
    assert backend.runtime is onnxruntime_session and backend.parameters[0].default == "cuda,cpu"
    with caplog.at_level(logging.WARNING):
        runner = pose_runner("cuda", pose, detector, tmp_path)
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert runner.session.active.startswith("CUDAExecutionProvider")
    else:
        assert runner.session.active == "CPUExecutionProvider"
        # One warning per session (pose and detector), naming what was skipped.
        assert all("CUDAExecutionProvider" in r.message for r in caplog.records if r.levelno == logging.WARNING)


def test_weights_by_url_are_downloaded_once_and_unpacked(known_answer, tmp_path) -> None:
    """rtmlib's model zoo serves zips holding end2end.onnx: a URL is fetched with rtmlib's downloader into
    the cache and unpacked; a second resolve does not fetch again."""
    pose, _, _ = known_answer
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "rtmpose-test.zip", "w") as archive:
        archive.write(pose, "rtmpose-test/end2end.onnx")
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rtmpose-test.zip"
        assert rtmpose.weights_problem(url) == ""
        first = rtmpose.resolve_weights(url, tmp_path / "cache")
        second = rtmpose.resolve_weights(url, tmp_path / "cache")
        assert first == second and first.suffix == ".onnx" and first.read_bytes() == pose.read_bytes()
        assert len(requests) == 1
        with pytest.raises(ConfigError, match="could not be downloaded"):
            rtmpose.resolve_weights(url.replace("rtmpose-test", "missing"), tmp_path / "cache")
    finally:
        server.shutdown()


def test_weights_problems_say_what_is_accepted(tmp_path) -> None:
    assert "does not exist" in rtmpose.weights_problem(str(tmp_path / "missing.onnx"))
    assert person_detector.weights_problem("yolov8n.pt") == ""  # an ultralytics name, downloaded by it
    assert person_detector.weights_problem("https://example.com/yolox.zip") == ""
    assert "does not exist" in person_detector.weights_problem(str(tmp_path / "missing.onnx"))
    with pytest.raises(ConfigError, match="not an ONNX file"):
        not_onnx = tmp_path / "weights.pth"
        not_onnx.write_bytes(b"x")
        from vision_factory.artifacts import prepare_artifact
        from vision_factory.export_cache import ExportCache

        prepare_artifact(rtmpose, "rtmpose", load_manifest("rtmpose").backend("onnx"), not_onnx, {}, {},
                         ExportCache(tmp_path), LOG)


def test_skeletons_come_from_rtmlib_by_keypoint_count() -> None:
    body, wholebody, hand = skeleton_for(17), skeleton_for(133), skeleton_for(21)
    assert body.keypoint_names[:3] == ("nose", "left_eye", "right_eye") and len(body.edges) == 19
    assert len(wholebody.keypoint_names) == 133 and hand.keypoint_names[0] == "wrist"
    assert all(0 <= a < 17 and 0 <= b < 17 for a, b in body.edges)
    unknown = skeleton_for(5)
    assert unknown.keypoint_names[4] == "keypoint_4" and unknown.edges == ()


def test_detector_and_pose_match_rtmlibs_own_classes_on_real_images(known_answer) -> None:
    """rtmlib's YOLOX and RTMPose, opening the same ONNX files themselves, on the real COCO images and
    bus.jpg: the same person boxes (rtmlib's unclipped, ours clipped to the image), and in the same boxes
    the same keypoints (within 1e-3 px; the stand-in pose network's peaks make every keypoint depend on
    the crop's affine transform) and scores."""
    from rtmlib import RTMPose, YOLOX

    pose, _, _ = known_answer
    ours_detector = YoloxPersons(OnnxRuntimeSession(asset(DETECTOR), {"execution_provider": "cpu"}))
    ours_pose = PoseEstimator(OnnxRuntimeSession(pose, {"execution_provider": "cpu"}))
    theirs_detector = YOLOX(str(asset(DETECTOR)), model_input_size=(416, 416), backend="onnxruntime", device="cpu")
    theirs_pose = RTMPose(str(pose), model_input_size=ours_pose.model_input_size, backend="onnxruntime",
                          device="cpu")
    images = [*sorted(asset(COCO).glob("*.jpg")), asset(ASSETS / "images" / "bus.jpg")]
    found = 0
    for path in images:
        image = cv2.imread(str(path))
        theirs = np.asarray(theirs_detector(image), np.float32).reshape(-1, 4)
        ours, _ = ours_detector(image, score_threshold=0.3)
        height, width = image.shape[:2]
        theirs_clipped = np.stack([theirs[:, 0].clip(0, width), theirs[:, 1].clip(0, height),
                                   theirs[:, 2].clip(0, width), theirs[:, 3].clip(0, height)], axis=1)
        assert len(ours) == len(theirs), path.name
        for box in theirs_clipped:
            assert np.abs(ours - box).max(axis=1).min() < 1e-3, (path.name, box)
        if len(theirs):
            keypoints, scores = ours_pose(image, theirs)
            their_keypoints, their_scores = theirs_pose(image, list(theirs))
            np.testing.assert_allclose(keypoints, their_keypoints, atol=1e-3)
            np.testing.assert_allclose(scores, their_scores, atol=1e-6)
        found += len(theirs)
    assert found >= 15  # 14 annotated people in the COCO images and 4 on bus.jpg, some of them small


def test_all_people_of_a_frame_in_one_run_answer_as_rtmlib_one_by_one(tmp_path) -> None:
    """A pose network with a dynamic batch axis whose answer depends on the crop: one run for every person of
    the frame gives rtmlib's RTMPose keypoints and scores, person by person, and those of one run each."""
    from rtmlib import RTMPose

    from vision_factory.tools.stand_in_models import batched_pose_model

    network = batched_pose_model(tmp_path / "batched.onnx")
    session = OnnxRuntimeSession(network, {"execution_provider": "cpu"})
    ours = PoseEstimator(session)
    assert ours.batched and ours.model_input_size == (192, 256)
    calls = []
    run = session.run
    session.run = lambda inputs: calls.append(len(inputs["input"])) or run(inputs)
    image = cv2.imread(str(asset(ASSETS / "images" / "bus.jpg")))
    boxes = np.array([[50, 400, 250, 900], [220, 380, 350, 860], [660, 380, 810, 880], [0, 550, 80, 880],
                      [100, 200, 700, 800]], np.float32)
    keypoints, scores = ours(image, boxes)
    assert calls == [5] and keypoints.shape == (5, 17, 2)
    theirs = RTMPose(str(network), model_input_size=(192, 256), backend="onnxruntime", device="cpu")
    their_keypoints, their_scores = theirs(image, list(boxes))
    np.testing.assert_allclose(keypoints, their_keypoints, atol=1e-3)
    np.testing.assert_allclose(scores, their_scores, atol=1e-5)
    for workers in (1, 3):  # the crops and their normalisation, on one thread or shared out: rtmlib's, bit for bit
        ours._crop_workers = workers
        blob, centers, scales = ours.preprocess(image, boxes)
        for crop, center, scale, box in zip(blob, centers, scales, boxes):
            their_crop, their_center, their_scale = theirs.preprocess(image, box)
            np.testing.assert_array_equal(crop, their_crop.transpose(2, 0, 1).astype(np.float32))
            np.testing.assert_array_equal(center, their_center)
            np.testing.assert_array_equal(scale, their_scale.reshape(2))
    assert len(set(map(tuple, keypoints[:, 0].round()))) == 5  # the crops answer differently: not vacuous
    ours.batched, calls[:] = False, []
    one_by_one = ours(image, boxes)
    assert calls == [1] * 5
    np.testing.assert_allclose(one_by_one[0], keypoints, atol=1e-3)
    np.testing.assert_allclose(one_by_one[1], scores, atol=1e-5)


def test_the_benchmarks_rtmpose_architecture_has_mmposes_sizes_and_rtmlibs_signature(tmp_path) -> None:
    """The pose network the benchmark measures (tools.rtmpose_architecture) is RTMPose as mmpose builds it:
    the parameter counts mmpose publishes for RTMPose-t/s/m/l, and, exported, rtmlib's signature with a dynamic
    batch axis that our estimator runs all of a frame's people through at once, as rtmlib runs them one by one."""
    pytest.importorskip("torch")
    from rtmlib import RTMPose

    from vision_factory.tools.rtmpose_architecture import RtmPose, export_rtmpose

    millions = {size: round(sum(p.numel() for p in RtmPose(size).parameters()) / 1e6, 2) for size in "tsml"}
    assert millions == {"t": 3.34, "s": 5.47, "m": 13.59, "l": 27.66}  # mmpose's RTMPose body model table
    network = export_rtmpose(tmp_path / "rtmpose_t.onnx", "t")
    session = OnnxRuntimeSession(network, {"execution_provider": "cpu"})
    assert session.input_shape == (-1, 3, 256, 192)
    image = cv2.imread(str(asset(ASSETS / "images" / "bus.jpg")))
    boxes = np.array([[50, 400, 250, 900], [220, 380, 350, 860], [660, 380, 810, 880]], np.float32)
    keypoints, scores = PoseEstimator(session)(image, boxes)
    theirs = RTMPose(str(network), model_input_size=(192, 256), backend="onnxruntime", device="cpu")
    their_keypoints, their_scores = theirs(image, list(boxes))
    assert keypoints.shape == (3, 17, 2)
    np.testing.assert_allclose(keypoints, their_keypoints, atol=1e-3)
    np.testing.assert_allclose(scores, their_scores, atol=1e-4)
