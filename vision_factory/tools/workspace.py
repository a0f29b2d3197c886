"""A colcon workspace of generated node packages, built and run as a user would (demo and tests).

The workspace's src/ holds a link to this vision_factory checkout and the generated packages; it
overlays whatever ROS environment is sourced (a distribution, or this repository's .cache/env.sh).
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from vision_factory.generator import plan_package, write_package


def source_checkout() -> Path:
    """The vision_factory repository this module runs from (it must be a source checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "package.xml").is_file():
        raise RuntimeError(f"{root} is not a vision_factory source checkout")
    return root


def shared_assets() -> Path:
    """../shared/assets beside the checkout: the real weights, images and bag the scripts default to."""
    return source_checkout().parent / "shared" / "assets"


def create_workspace(ws: Path, pairs: Iterable[tuple[str, str | None]],
                     weights: Mapping[str, str] | None = None) -> list[str]:
    """Write ws/src with vision_factory and one generated package per (model, backend), with the default
    weights of `weights[model]` where given (plus the message packages they need); their names."""
    src = Path(ws) / "src"
    src.mkdir(parents=True, exist_ok=True)
    link = src / "vision_factory"
    if not link.exists():
        link.symlink_to(source_checkout(), target_is_directory=True)
    packages = []
    for model, backend in pairs:
        plan = plan_package(model, backend, weights=(weights or {}).get(model))
        write_package(plan, src)
        packages.append(plan.package)
    return packages


def colcon_build(ws: Path) -> None:
    """`colcon build` the workspace; on failure raise with the end of colcon's output."""
    result = subprocess.run(["colcon", "--log-base", "log", "build", "--base-paths", "src",
                             "--event-handlers", "console_cohesion+", "summary-"],
                            cwd=ws, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"colcon build failed in {ws}:\n{(result.stdout + result.stderr)[-4000:]}")


def workspace_env(ws: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment after `source ws/install/setup.bash`."""
    setup = Path(ws) / "install" / "setup.bash"
    output = subprocess.run(["bash", "-c", f"source '{setup}' && env -0"], env=dict(base or os.environ),
                            capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in output.decode().split("\0") if "=" in item)


def node_command(ws: Path, package: str, executable: str, overrides: Mapping[str, object] | None = None,
                 remaps: Mapping[str, str] | None = None, params_files: Iterable[Path] = ()) -> list[str]:
    """What `ros2 run <package> <executable> --ros-args --params-file <share>/config/params.yaml
    [--params-file F ...] -p ... -r ...` runs, without ros2cli: the installed executable itself."""
    install = Path(ws) / "install" / package
    command = [str(install / "lib" / package / executable), "--ros-args",
               "--params-file", str(install / "share" / package / "config" / "params.yaml")]
    for params_file in params_files:
        command += ["--params-file", str(params_file)]
    for name, value in (overrides or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        command += ["-p", f"{name}:={text}"]
    for source, target in (remaps or {}).items():
        command += ["-r", f"{source}:={target}"]
    return command


_children: set[subprocess.Popen] = set()  # started by start_process and not yet stopped


# Run in the child instead of a preexec_fn (which can deadlock between fork and exec beside the parent's
# threads): set the kernel's parent-death signal, give up if the parent already died (the signal would
# never come), then become the command.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def start_process(command: list[str], env: Mapping[str, str] | None = None, stdout: Any = None,
                  stderr: Any = None) -> subprocess.Popen:
    """Start a node (or any helper process) that dies with this one: in a process group of its own (so
    stop() ends whatever it started too), sent SIGKILL by the kernel when this process dies, even by a
    segmentation fault (Linux), and stopped at this process's normal exit if nobody stopped it before.
    Its stdin is /dev/null: it never reads what belongs to this process."""
    command = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]
    process = subprocess.Popen(command, env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
                               stdout=stdout, stderr=stderr, start_new_session=True)
    _children.add(process)
    return process


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT the node, as Ctrl-C does, and return its exit code (killing its process group if it hangs)."""
    _children.discard(process)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the node if it hung, and anything it left behind
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    return process.returncode


@atexit.register
def _stop_children() -> None:
    for process in list(_children):
        stop(process, timeout_s=2.0)
