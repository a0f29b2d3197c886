"""Shared fixtures: the real assets beside the checkout, isolated ROS domains, a built workspace."""
from __future__ import annotations

import faulthandler
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("VISION_FACTORY_ASSETS", ROOT.parent / "shared" / "assets"))
BAG = ASSETS / "rosbags" / "mmpose_street_demo_5f"
INT8_ONNX = ASSETS / "models" / "yolov8n_int8.onnx"
FP32_ONNX = ASSETS / "models" / "derived" / "yolov8n_from_int8_onnx_fp32.onnx"
CHECKPOINT = ASSETS / "models" / "derived" / "yolov8n_from_int8_onnx.pt"
IMAGES = ASSETS / "images"

os.environ.setdefault("YOLO_OFFLINE", "1")
# Tests import ultralytics (the reference) before vision_factory may; loading checkpoints stays restricted.
os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA?sockets_size=64MB")  # as .cache/env.sh
# transformers keeps code it imports from checkpoints (the remote-code test) under HF_HOME: not in ~.
os.environ.setdefault("HF_HOME", str(ROOT / ".cache" / "huggingface"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cached_model_without_torch(model: str, weights: Path, cache: Path, call: str) -> str:
    """The stdout of a fresh interpreter, in which torch and transformers cannot be imported, that loads the
    default onnx `model` of `weights` from `cache` (exported there before) as `m` for 480x640 frames and runs
    `call` (Python that prints what the test checks); fails the test if that interpreter fails."""
    import subprocess
    import sys

    script = (
        "import sys, logging, numpy as np\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "from vision_factory.loaded_model import load_default_model\n"
        f"m = load_default_model({model!r}, 'onnx', {str(weights)!r}, {str(cache)!r}, "
        "logging.getLogger('t'), (480, 640)).model\n"
        f"{call}\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(autouse=True)
def _last_resort_timeout(request: pytest.FixtureRequest):
    """If a test outlives its pytest-timeout by a minute (its timer thread never got the GIL), the C-level
    faulthandler dumps the stacks and ends the worker; pytest-xdist reports that test failed and goes on."""
    marker = request.node.get_closest_marker("timeout")
    seconds = float(marker.args[0] if marker else request.config.getini("timeout") or 0)
    if seconds > 0:
        faulthandler.dump_traceback_later(seconds + 60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def asset(path: Path) -> Path:
    """`path` if the shared test assets are present, else skip the test saying what is missing."""
    if not path.exists():
        pytest.skip(f"test asset {path} is absent (the shared assets live in ../shared/assets beside "
                    f"the checkout, or set VISION_FACTORY_ASSETS)")
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A colcon workspace with vision_factory, the yolo onnx, openvino, cuda and remote packages, the rtmpose onnx
    and openvino ones (with vision_factory_msgs, which the generator writes beside them), the
    depth_anything onnx and cuda ones, the grounding_dino, sam and florence2 onnx ones and the bytetrack
    tracker, built once."""
    from vision_factory.tools.workspace import colcon_build, create_workspace, workspace_env

    ws = tmp_path_factory.mktemp("ws")
    create_workspace(ws, [("yolo", "onnx"), ("yolo", "openvino"), ("yolo", "cuda"), ("yolo", "remote"),
                          ("rtmpose", "onnx"), ("rtmpose", "openvino"), ("depth_anything", "onnx"),
                          ("depth_anything", "cuda"), ("grounding_dino", "onnx"), ("sam", "onnx"),
                          ("florence2", "onnx"), ("bytetrack", None)],
                     weights={"yolo": str(asset(INT8_ONNX))})
    colcon_build(ws)
    return ws, workspace_env(ws)


@pytest.fixture(scope="session")
def frames() -> list:
    """The recorded camera frames (sensor_msgs/Image) of the bag."""
    from vision_factory.recorded_images import read_images

    return read_images(asset(BAG))
