"""Processes the harness, the demo and the benchmark start never outlive them: not after a crash of the
parent (a segmentation fault), not after a normal exit that forgot them, and stop() ends what they
started in turn."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from vision_factory.tools.workspace import start_process, stop

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def gone_soon(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def parent_that(ends: str) -> subprocess.CompletedProcess:
    code = (f"import sys, ctypes\nfrom vision_factory.tools.workspace import start_process\n"
            f"print(start_process({SLEEPER!r}).pid, flush=True)\n{ends}\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_child_dies_when_its_parent_segfaults() -> None:
    result = parent_that("ctypes.string_at(0)")  # reads address 0: SIGSEGV, no finaliser runs
    assert result.returncode == -11
    assert gone_soon(int(result.stdout.split()[0]))


def test_a_child_nobody_stopped_is_stopped_at_a_normal_exit() -> None:
    result = parent_that("sys.exit(0)")
    assert result.returncode == 0
    assert gone_soon(int(result.stdout.split()[0]))


def test_stop_ends_what_the_process_started() -> None:
    spawner = start_process([sys.executable, "-c", f"import subprocess; print(subprocess.Popen({SLEEPER!r}).pid, "
                             f"flush=True); import time; time.sleep(120)"], stdout=subprocess.PIPE)
    grandchild = int(spawner.stdout.readline())
    stop(spawner, timeout_s=0.5)  # python's default SIGINT: the spawner ends, its child would not
    assert gone_soon(spawner.pid) and gone_soon(grandchild)


HUNG_SUITE = '''
import ctypes, os, sys, pytest
from vision_factory.tools.workspace import start_process

@pytest.mark.timeout(3)
def test_hangs_in_native_code():
    child = start_process([sys.executable, "-c", "import time; time.sleep(120)"])
    print("child", child.pid, file=open("child.pid", "a"))
    ctypes.CDLL(None).sleep(60)  # blocked in C, as in a Fast DDS teardown: no signal handler can run

def test_after_it():
    pass

def test_segfaults_once():
    if not os.path.exists("crashed"):
        open("crashed", "w").close()
        ctypes.string_at(0)
'''


def test_a_hung_or_crashed_test_runs_once_more_then_fails_alone_with_its_stacks(tmp_path: Path) -> None:
    """The suite's settings (setup.cfg, conftest.py): a test that hangs or crashes its worker runs once more in
    a fresh worker; the one that hangs again fails at its timeout, the one that crashed once passes; the run
    goes on to its report, which shows both deaths with the stacks where they happened; the nodes the hung test
    started do not outlive it."""
    (tmp_path / "test_hung.py").write_text(HUNG_SUITE)
    tests = Path(__file__).resolve().parent
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_XDIST")}  # ours
    env.update(PYTHONPATH=os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]),
               VISION_FACTORY_WORKER_LOGS=str(tmp_path / "workers"))  # not this run's workers' logs
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-c", str(tests.parent / "setup.cfg"), "--rootdir",
                             str(tmp_path), "-p", "conftest", "-n", "1", "--max-worker-restart", "5", "-p",
                             "no:cacheprovider", "test_hung.py"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert time.monotonic() - started < 60, result.stdout
    assert "1 failed, 2 passed, 2 rerun" in result.stdout, result.stdout
    hung = result.stdout.split("= worker crashed in test_hung.py::test_hangs_in_native_code =")
    crashed = result.stdout.split("= worker crashed in test_hung.py::test_segfaults_once =")
    assert len(hung) == 3 and len(crashed) == 2, result.stdout  # twice, once
    assert "Timeout (0:00:03)!" in hung[2] and "line 9 in test_hangs_in_native_code" in hung[2], hung[2]
    assert "Fatal Python error: Segmentation fault" in crashed[1] and "in test_segfaults_once" in crashed[1]
    assert "[test_hung.py::test_segfaults_once] " in crashed[1] and " worker rss " in crashed[1]
    children = [int(line.split()[1]) for line in (tmp_path / "child.pid").read_text().splitlines()]
    assert len(children) == 2 and all(gone_soon(pid) for pid in children)
