"""The remote backend against a real Open Inference Protocol server: MLServer on 127.0.0.1 (oip_server.py),
serving the ONNX file `vision-factory export --repository` wrote, with onnxruntime. Over gRPC (the default) and
HTTP; the repository's config.pbtxt read with Triton's own ModelConfig definition; through the built node on the
bag, a server that stops mid-stream and comes back, and a wrong model name at start."""
from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ASSETS, BAG, CHECKPOINT, IMAGES, INT8_ONNX, asset
from reference import from_message

pytest.importorskip("tritonclient.grpc", reason="the remote backend's client (requirements/remote.txt)")
if importlib.util.find_spec("mlserver") is None:  # not imported here: see oip_server.py
    pytest.skip("the test server MLServer is not installed (requirements/test.txt)", allow_module_level=True)
from oip_server import Server, TlsProxy  # noqa: E402

from vision_factory.artifacts import Artifact  # noqa: E402
from vision_factory.backends.remote_session import (RECONNECT_MS, RemoteSession, option_problem,  # noqa: E402
                                                    parse_server_url)
from vision_factory.backends.session import BackendError  # noqa: E402
from vision_factory.cli import main as cli  # noqa: E402
from vision_factory.loaded_model import load_default_model  # noqa: E402

LOG = logging.getLogger("test_remote")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository as a user writes it for the demo's weights."""
    folder = tmp_path_factory.mktemp("repository")
    cli(["export", "--model", "yolo", "--weights", str(asset(INT8_ONNX)), "--repository", str(folder),
         "--cache-dir", str(folder.parent / "export-cache")])
    return folder


@pytest.fixture
def server(repository: Path, tmp_path: Path):
    """MLServer serving the repository's yolo (and, as `other`, a network of another shape)."""
    started = Server(tmp_path / "server", {"yolo": repository / "yolo" / "1" / "model.onnx",
                                           "other": other_network(tmp_path / "other.onnx")})
    started.start()
    yield started
    started.stop()


def other_network(path: Path) -> Path:
    """An ONNX network with YOLO's tensor names at another input size."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("ReduceMean", ["images"], ["output0"], axes=[1])], "other",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 1, 320, 320])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def artifact() -> Artifact:
    return Artifact(asset(INT8_ONNX), {}, exported=False, name="yolo")


def test_repository_config_is_a_triton_model_config_of_the_network(repository: Path, tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((repository / "yolo" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("yolo", "onnxruntime_onnx", 0)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("images", model_config_pb2.TYPE_FP32, [1, 3, 640, 640])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("output0", [1, 84, 8400])]
    assert not config.HasField("dynamic_batching")  # a fixed batch of 1 cannot be batched
    assert (repository / "yolo" / "1" / "model.onnx").read_bytes() == asset(INT8_ONNX).read_bytes()

    # A network with a dynamic batch axis gets batching, and shapes without the batch axis.
    import onnx
    from onnx import TensorProto, helper

    from vision_factory.model_repository import write_model

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "batchable",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8])])
    onnx.save(helper.make_model(graph), str(tmp_path / "batchable.onnx"))
    folder = write_model(tmp_path / "repo", "net", 2, tmp_path / "batchable.onnx", max_batch_size=4, instances=2,
                         kind="gpu")
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.max_batch_size == 4 and config.HasField("dynamic_batching")
    assert [list(t.dims) for t in (*config.input, *config.output)] == [[3, 8], [3, 8]]
    assert (config.instance_group[0].count, config.instance_group[0].kind) == (
        2, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    assert (folder / "2" / "model.onnx").is_file()


@pytest.mark.parametrize("url, problem", [
    ("grpc://localhost:8001", ""), ("localhost:8001", ""), ("https://server.example:443", ""),
    ("ftp://server:21", "use one of grpc://"), ("grpc://localhost", "not a server address"),
    ("http://host:8000/v2", "not a server address")])
def test_server_urls(url: str, problem: str) -> None:
    assert problem in option_problem("server_url", url) and bool(option_problem("server_url", url)) == bool(problem)
    if not problem:
        assert parse_server_url(url).host_port.endswith(url.rsplit(":", 1)[1])


def test_auth_header_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "is not set" in option_problem("auth_header_env", "VF_TEST_TOKEN")
    monkeypatch.setenv("VF_TEST_TOKEN", "no colon")
    assert "Header-Name: value" in option_problem("auth_header_env", "VF_TEST_TOKEN")
    monkeypatch.setenv("VF_TEST_TOKEN", "Authorization: Bearer s3cret")
    assert option_problem("auth_header_env", "VF_TEST_TOKEN") == ""


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_remote_model_answers_as_the_onnx_model_does(server: Server, tmp_path: Path, protocol: str) -> None:
    image = cv2.imread(str(asset(IMAGES / "bus.jpg")))
    url = server.grpc_url if protocol == "grpc" else server.http_url
    remote = load_default_model("yolo", "remote", asset(INT8_ONNX), tmp_path, LOG, server_url=url)
    local = load_default_model("yolo", "onnx", asset(INT8_ONNX), tmp_path, LOG)
    ours, theirs = remote.model(image, 0.25, 0.7, "", 300), local.model(image, 0.25, 0.7, "", 300)
    assert len(ours.scores) >= 4  # the bus and its passengers: not vacuous
    # The same file on the same onnxruntime: the same numbers.
    np.testing.assert_array_equal(ours.boxes_xyxy, theirs.boxes_xyxy)
    np.testing.assert_array_equal(ours.scores, theirs.scores)
    np.testing.assert_array_equal(ours.class_ids, theirs.class_ids)
    assert remote.session.active == f"{url} model yolo"
    warning, values = remote.session.report()
    assert warning == "" and values["server_failures"] == "0" and int(values["server_requests"]) >= 2


def test_start_errors_say_what_is_wrong_in_one_line(server: Server) -> None:
    cases = [({"server_url": "grpc://127.0.0.1:1", "connect_timeout_s": 2.0},
              r"cannot reach the inference server at grpc://127\.0\.0\.1:1: UNAVAILABLE"),
             ({"server_url": server.grpc_url, "model_name": "nope"},
              r"does not serve model 'nope' .*; it serves: .*yolo version 1"),
             ({"server_url": server.grpc_url, "model_name": "other"},
              r"'other' .* is another network than this node's \(images: images FP32 \[1,3,320,320\] there, "
              r"images FP32 \[1,3,640,640\] here")]
    for options, message in cases:
        with pytest.raises(BackendError, match=message) as error:
            RemoteSession(artifact(), options)
        assert "\n" not in str(error.value)


def test_a_server_that_stops_is_retried_counted_and_used_again_once_back(server: Server) -> None:
    session = RemoteSession(artifact(), {"server_url": server.grpc_url, "retries": 2})
    tensor = np.zeros((1, 3, 640, 640), np.float32)
    session.run({"images": tensor})
    server.stop()
    with pytest.raises(BackendError, match="the inference server grpc://.* failed \\(model yolo\\): UNAVAILABLE"):
        session.run({"images": tensor})
    warning, values = session.report()
    assert values["server_failures"] == "3"  # the request and its two retries
    assert warning.startswith("3 requests to the inference server failed in the last 10 s: UNAVAILABLE")
    server.start()
    # The same session: gRPC reconnects by itself, at most RECONNECT_MS after the server is back.
    deadline = time.monotonic() + 5 * RECONNECT_MS / 1000
    while True:
        try:
            session.run({"images": tensor})
            break
        except BackendError:
            assert time.monotonic() < deadline, "the session did not reconnect"
    after = session.report()[1]
    assert int(after["server_requests"]) - int(after["server_failures"]) == 2  # one answer before, one after


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_auth_header_reaches_the_server(repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           protocol: str) -> None:
    guarded = Server(tmp_path / "guarded", {"yolo": repository / "yolo" / "1" / "model.onnx"},
                     required_header="Authorization: Bearer s3cret")
    guarded.start()
    try:
        url = guarded.grpc_url if protocol == "grpc" else guarded.http_url
        tensor = {"images": np.zeros((1, 3, 640, 640), np.float32)}
        with pytest.raises(BackendError, match="Authorization header|authorization header"):
            RemoteSession(artifact(), {"server_url": url, "retries": 0}).run(tensor)
        monkeypatch.setenv("VF_TEST_TOKEN", "Authorization: Bearer s3cret")
        outputs = RemoteSession(artifact(), {"server_url": url, "auth_header_env": "VF_TEST_TOKEN"}).run(tensor)
        assert outputs[0].shape == (1, 84, 8400)
    finally:
        guarded.stop()



@pytest.mark.parametrize("protocol", ["grpcs", "https"])
def test_tls_with_the_servers_certificate_authority(server: Server, tmp_path: Path, protocol: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificate")
    proxy = TlsProxy(server.grpc_port if protocol == "grpcs" else server.http_port, tmp_path)
    try:
        url = f"{protocol}://127.0.0.1:{proxy.port}"
        # The system's authorities do not know the test's certificate: no connection.
        with pytest.raises(BackendError, match="cannot reach the inference server"):
            RemoteSession(artifact(), {"server_url": url, "connect_timeout_s": 3.0})
        session = RemoteSession(artifact(), {"server_url": url, "tls_ca_file": str(proxy.certificate)})
        assert session.run({"images": np.zeros((1, 3, 640, 640), np.float32)})[0].shape == (1, 84, 8400)
    finally:
        proxy.close()

# --- the built node, over ROS -------------------------------------------------------------------------

def test_remote_node_answers_the_bag_as_the_onnx_node_does_and_switches_server_live(
        workspace, frames, server: Server, tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    from node_harness import get_parameter, launched, replay_and_collect, set_parameter

    with launched(workspace, "onnx", tmp_path) as (process, probe, log):
        local = replay_and_collect(probe, "onnx", frames)
    with launched(workspace, "remote", tmp_path, server_url=server.grpc_url) as (process, probe, log):
        remote = replay_and_collect(probe, "remote", frames)
        assert get_parameter(probe, "/yolo_remote", "active_server") == f"{server.grpc_url} model yolo"
        assert set_parameter(probe, "/yolo_remote", "server_url", server.http_url) == (True, "")
        assert probe.spin_until(lambda: get_parameter(probe, "/yolo_remote", "active_server").startswith("http"), 60)
        over_http = replay_and_collect(probe, "remote", frames[:2])
        ok, reason = set_parameter(probe, "/yolo_remote", "server_url", "ftp://nowhere:1")
        assert not ok and "use one of grpc://" in reason
    assert len(local) == len(remote) == len(frames)
    assert [from_message(a) for a in remote] == [from_message(a) for a in local]
    assert [(a.header.stamp, a.header.frame_id) for a in remote] == [(a.header.stamp, a.header.frame_id)
                                                                      for a in local]
    assert [from_message(a) for a in over_http] == [from_message(a) for a in local[:2]]


def test_remote_node_survives_a_server_outage_and_reports_it(workspace, frames, server: Server,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    from node_harness import diagnostics_of, launched, replay_and_collect, results_of

    with launched(workspace, "remote", tmp_path, server_url=server.grpc_url) as (process, probe, log):
        before = replay_and_collect(probe, "remote", frames[:2])
        server.stop()
        answered = len(results_of(probe, "remote"))
        probe.replay("/camera/image_raw", frames[2:], settle_s=0.0)
        probe.spin_until(lambda: any(s["level"] == 1 and "requests to the inference server failed" in s["message"]
                                     for s in diagnostics_of(probe, "yolo_remote")), 15)
        answered_during_outage = len(results_of(probe, "remote")) - answered
        server.start()
        # The node's gRPC channel retries the connection at most RECONNECT_MS apart: the first frames after the
        # restart may still fail. Once one is answered, every frame must be.
        deadline = time.monotonic() + 10 * RECONNECT_MS / 1000
        while len(results_of(probe, "remote")) == answered and time.monotonic() < deadline:
            probe.replay("/camera/image_raw", frames[:1], settle_s=0.0)
            probe.spin_until(lambda: len(results_of(probe, "remote")) > answered, 1.0)
        after = replay_and_collect(probe, "remote", frames)
        assert process.poll() is None
        statuses = diagnostics_of(probe, "yolo_remote")
    assert len(before) == 2 and answered_during_outage == 0 and len(after) == len(frames)
    failing = [s for s in statuses if "requests to the inference server failed" in s["message"]]
    assert failing and all(s["level"] == 1 and int(s["server_failures"]) >= 1 for s in failing)
    assert int(statuses[-1]["server_failures"]) >= 3 and statuses[-1]["server"] == server.grpc_url
    assert "inference failed: BackendError: the inference server" in log.read_text()


def test_remote_node_with_a_wrong_model_name_exits_1_with_one_line(workspace, server: Server, tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    from node_harness import next_domain

    from vision_factory.tools.workspace import node_command

    ws, env = workspace
    command = node_command(ws, "yolo_remote", "yolo_remote", {"server_url": server.grpc_url, "model_name": "yolo8",
                                                              "cache_dir": str(tmp_path)})
    result = subprocess.run(command, env={**env, "ROS_DOMAIN_ID": str(next_domain())}, capture_output=True,
                            text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert errors[0].startswith("yolo_remote: cannot start: the inference server at grpc://127.0.0.1:")
    assert "does not serve model 'yolo8'" in errors[0] and "it serves: " in errors[0] and "yolo version 1" in errors[0]



@pytest.mark.timeout(600)
def test_quick_benchmark_has_a_remote_row_with_the_network_hop(workspace, tmp_path: Path) -> None:
    pytest.importorskip("ultralytics", reason="the yolo suite's baseline is ultralytics predict")
    from node_harness import next_domain

    from vision_factory.tools.bench.compare import SUITES, bench_frames, run_suite, runnable_backends, write_results

    # The benchmark's weights are a checkpoint (its baseline runs them with ultralytics): the server serves
    # their export, as a user would set it up.
    cli(["export", "--model", "yolo", "--weights", str(asset(CHECKPOINT)), "--repository", str(tmp_path / "repo"),
         "--cache-dir", str(tmp_path / "export-cache")])
    server = Server(tmp_path / "server", {"yolo": tmp_path / "repo" / "yolo" / "1" / "model.onnx"})
    assert runnable_backends(["remote"])[1]["remote"].startswith("no --server-url")
    assert runnable_backends(["remote"], server.grpc_url) == (["remote"], {})
    ws, env = workspace
    server.start()
    try:
        rows = run_suite(SUITES["yolo"], ws, env, ["onnx", "remote"], asset(CHECKPOINT), bench_frames(asset(BAG)),
                         True, tmp_path, next_domain(), {"remote": {"server_url": server.grpc_url}})
    finally:
        server.stop()
    remote = next(r for r in rows if r["backend"] == "remote")
    assert remote["raw"]["active"] == f"{server.grpc_url} model yolo" and remote["raw"]["p50_ms"] > 0
    assert remote["raw"]["tensor_mb"] == round((3 * 640 * 640 + 84 * 8400) * 4 / 1e6, 2)
    assert remote["e2e"]["p50_ms"] > 0 and remote["max_output_hz"] > 0
    markdown = write_results(rows, {}, True, tmp_path)
    assert "| yolo_remote |" in markdown
    assert "- yolo_remote: round trip p50 " in markdown and "against the yolo_onnx session's" in markdown
    assert "on 1 GbE" in markdown and "on 10 GbE" in markdown


def test_pose_and_depth_networks_answer_through_the_server_as_locally(tmp_path: Path) -> None:
    """Every network of the other families, served from the repository `export` writes for them: RTMPose's
    two (the detector as rtmpose_detector_model) and Depth Anything's, exported for 640x480 frames."""
    from vision_factory.tools.stand_in_models import depth_anything_checkpoint, known_answer_pose_model, peak_bins

    image = cv2.resize(cv2.imread(str(asset(IMAGES / "bus.jpg"))), (640, 480))
    pose = known_answer_pose_model(tmp_path / "pose.onnx", peak_bins())
    detector = asset(ASSETS / "models" / "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx")
    depth = depth_anything_checkpoint(tmp_path / "depth_anything")
    repository, cache = tmp_path / "repo", tmp_path / "export-cache"
    cli(["export", "--model", "rtmpose", "--weights", str(pose), "-p", f"detector_model={detector}",
         "--repository", str(repository), "--cache-dir", str(cache)])
    cli(["export", "--model", "depth_anything", "--weights", str(depth), "--repository", str(repository),
         "--cache-dir", str(cache)])
    served = {name: repository / name / "1" / "model.onnx" for name in ("rtmpose", "rtmpose_detector_model",
                                                                       "depth_anything")}
    server = Server(tmp_path / "server", served)
    server.start()
    try:
        remote = load_default_model("rtmpose", "remote", pose, cache, LOG, server_url=server.grpc_url,
                                    detector_model=str(detector))
        local = load_default_model("rtmpose", "onnx", pose, cache, LOG, detector_model=str(detector))
        ours, theirs = remote.model(image), local.model(image)
        assert remote.sessions["detector_model"].active == f"{server.grpc_url} model rtmpose_detector_model"
        assert len(ours.scores) >= 3  # people on the bus.jpg pavement
        for field in ("boxes_xyxy", "scores", "keypoints", "keypoint_scores"):
            np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field))

        remote = load_default_model("depth_anything", "remote", depth, cache, LOG, server_url=server.grpc_url)
        local = load_default_model("depth_anything", "onnx", depth, cache, LOG)
        np.testing.assert_array_equal(remote.model(image).values, local.model(image).values)
    finally:
        server.stop()


def test_grounding_dino_answers_through_the_server_as_locally(tmp_path: Path) -> None:
    """Grounding DINO's network, served from the repository `export` writes for it (640x480 frames): integer
    token inputs whose length follows the prompt, so one served model answers prompts of any length."""
    from vision_factory.tools.stand_in_models import grounding_dino_checkpoint

    image = cv2.resize(cv2.imread(str(asset(IMAGES / "bus.jpg"))), (640, 480))
    weights = grounding_dino_checkpoint(tmp_path / "grounding_dino")
    repository, cache = tmp_path / "repo", tmp_path / "export-cache"
    cli(["export", "--model", "grounding_dino", "--weights", str(weights), "--repository", str(repository),
         "--cache-dir", str(cache)])
    server = Server(tmp_path / "server", {"grounding_dino": repository / "grounding_dino" / "1" / "model.onnx"})
    server.start()
    try:
        remote = load_default_model("grounding_dino", "remote", weights, cache, LOG, server_url=server.grpc_url)
        local = load_default_model("grounding_dino", "onnx", weights, cache, LOG)
        for prompt in ("person", "person . bus . red car . traffic light"):
            ours, theirs = remote.model(image, prompt=prompt), local.model(image, prompt=prompt)
            assert len(theirs) > 0 and ours.labels == theirs.labels
            for field in ("boxes_xyxy", "scores", "class_ids"):
                np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field))
    finally:
        server.stop()


@pytest.mark.parametrize("version", [1, 2], ids=["sam", "sam2"])
def test_sam_answers_through_the_server_as_locally(tmp_path: Path, version: int) -> None:
    """Segment Anything's two networks, served from the repository `export` writes for them (sam_encoder,
    sam_decoder): the decoder takes the encoder's feature maps (SAM 2: three) and any number of prompts."""
    from vision_factory.tools.stand_in_models import sam_checkpoint

    image = cv2.resize(cv2.imread(str(asset(IMAGES / "bus.jpg"))), (640, 480))
    weights = sam_checkpoint(tmp_path / "sam", version=version)
    repository, cache = tmp_path / "repo", tmp_path / "export-cache"
    cli(["export", "--model", "sam", "--weights", str(weights), "--repository", str(repository),
         "--cache-dir", str(cache)])
    server = Server(tmp_path / "server", {name: repository / name / "1" / "model.onnx"
                                          for name in ("sam_encoder", "sam_decoder")})
    server.start()
    try:
        remote = load_default_model("sam", "remote", weights, cache, LOG, server_url=server.grpc_url)
        local = load_default_model("sam", "onnx", weights, cache, LOG)
        for boxes, points in (("40,120,200,470", ""), ("40,120,200,470; 230,100,330,420; 0,250,640,480", "300,200")):
            ours = remote.model(image, boxes=boxes, points=points)
            theirs = local.model(image, boxes=boxes, points=points)
            assert len(theirs) > 0 and np.array_equal(ours.label_image, theirs.label_image)
            np.testing.assert_allclose(ours.prompts.scores, theirs.prompts.scores, atol=1e-6)
    finally:
        server.stop()


def test_florence2_answers_through_the_server_as_locally(tmp_path: Path) -> None:
    """Florence-2's two networks served (florence2_encoder, florence2_decoder): the decoder called once a
    token with the growing key/value cache (empty at the first token) gives the same tokens as onnx."""
    from vision_factory.tools.stand_in_models import florence2_checkpoint

    image = cv2.resize(cv2.imread(str(asset(IMAGES / "bus.jpg"))), (640, 480))
    weights = florence2_checkpoint(tmp_path / "florence2")
    repository, cache = tmp_path / "repo", tmp_path / "export-cache"
    cli(["export", "--model", "florence2", "--weights", str(weights), "--repository", str(repository),
         "--cache-dir", str(cache)])
    server = Server(tmp_path / "server", {name: repository / name / "1" / "model.onnx"
                                          for name in ("florence2_encoder", "florence2_decoder")})
    server.start()
    try:
        remote = load_default_model("florence2", "remote", weights, cache, LOG, server_url=server.grpc_url)
        local = load_default_model("florence2", "onnx", weights, cache, LOG)
        for task in ("caption", "od"):
            ours, theirs = remote.model.generate(image, task, "", 24), local.model.generate(image, task, "", 24)
            assert len(theirs) > 2 and ours == theirs, task
    finally:
        server.stop()
