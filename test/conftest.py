"""Shared fixtures: the real assets beside the checkout, isolated ROS domains, a built workspace."""
from __future__ import annotations

import faulthandler
import os
import time
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


# Each pytest-xdist worker's stdout and stderr go to a file here, so that what it wrote as it died (faulthandler's
# stacks of a segmentation fault or of a timeout, below) reaches the report of the test that crashed it: on the
# terminal it was lost among other lines, and a worker's stdout is /dev/null.
WORKER_LOGS = Path(os.environ.get("VISION_FACTORY_WORKER_LOGS", ROOT / ".cache" / "test-workers"))
_worker_log: int | None = None  # its descriptor


@pytest.hookimpl(tryfirst=True)  # before the faulthandler plugin duplicates stderr
def pytest_configure(config: pytest.Config) -> None:
    global _worker_log
    # A pytest-xdist worker's id; not PYTEST_XDIST_WORKER, which a pytest that a test starts inherits.
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker:
        WORKER_LOGS.mkdir(parents=True, exist_ok=True)
        path = WORKER_LOGS / f"{worker}.log"
        path.write_bytes(b"")
        _worker_log = os.open(path, os.O_WRONLY | os.O_APPEND)  # appended by every descriptor of it
        os.dup2(_worker_log, 1)
        os.dup2(_worker_log, 2)


_crashes: list[tuple[str, str]] = []  # (test, its report), in the controller


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: object) -> None:
    """pytest-xdist's hook for a test whose worker died (a native crash, its timeout, a kill from outside): the
    end of that worker's output goes into the report, and the test runs once more in a fresh worker, since
    what the worker died of may be the machine's (CI once lost two workers silently, neither test failing
    here in many runs). Every crash is printed at the end of the run (pytest_terminal_summary); a test that
    crashes its worker twice fails."""
    log = WORKER_LOGS / f"{report.node.gateway.id}.log"
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else ["(no log file)"]
    lines = [line for line in lines if not any(f"/{frames}/" in line for frames in ("_pytest", "pluggy", "execnet"))]
    report.longrepr = (f"{report.longrepr}\nthe end of the worker's output ({log}); no stack below and a memory "
                       f"line last means it was killed from outside (SIGKILL: the out-of-memory killer?):\n"
                       + "\n".join(lines[-120:]))
    first = all(test != crashitem for test, _ in _crashes)
    _crashes.append((crashitem, str(report.longrepr)))
    if first:
        sched.mark_test_pending(crashitem)
        report.outcome = "rerun"  # shown as R by pytest-rerunfailures


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for test, text in _crashes:
        terminalreporter.write_sep("=", f"worker crashed in {test}", red=True)
        terminalreporter.write_line(text)


def _memory_line(nodeid: str) -> str:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    available = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemAvailable:")), "?")
    rss, peak = (status.get(key, "?").strip() for key in ("VmRSS", "VmHWM"))
    return f"[{nodeid}] {time.strftime('%H:%M:%S')} worker rss {rss}, peak {peak}; machine available {available} kB\n"


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: object) -> bool | None:
    """In a worker, a test's timeout (pytest-timeout's setting or marker) is faulthandler's watchdog: a C thread
    that fires even while native code holds the GIL (seen: Fast DDS deadlocked tearing down a transport) and
    writes every thread's stack to the worker's log before ending the worker; pytest_handlecrashitem takes it
    from there."""
    if _worker_log is None:
        return None  # not a worker: pytest-timeout's own timer
    os.write(_worker_log, _memory_line(item.nodeid).encode())
    if settings.timeout > 0:
        faulthandler.dump_traceback_later(settings.timeout, exit=True, file=_worker_log)
    return True


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    if _worker_log is None:
        return None
    faulthandler.cancel_dump_traceback_later()
    return True


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
