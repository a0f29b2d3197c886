"""Launch to launch: is a node as fast in every launch? Earlier runs saw the onnx YOLO node's in-node inference
at about 57 ms in some launches and 73 to 78 ms in others, for a whole launch.

    python -m vision_factory.tools.bench.launches [--launches 20] [--backend onnx] [--frames 40]
                                                   [--weights W] [-p NAME=VALUE ...] [--out out/launches]

Launches the YOLO node `--launches` times on one warm export cache; each time sends `--frames` 640x480 frames
of the bag one at a time and takes the median frame stamp -> answer latency, and the median inference time
the node reports on /diagnostics (which tells a slow network run from slow transport). Prints each launch's
median, the median of medians, and the launches slower than it by more than 10% (bimodal launches show up
there); writes launches.json and launches.png.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from vision_factory.parameters import parse_assignments
from vision_factory.tools.bench.compare import bench_frames
from vision_factory.tools.bench.node_probe import NodeUnderTest
from vision_factory.tools.workspace import (colcon_build, create_workspace, node_command, shared_assets, source_checkout,
                                            workspace_env)

ASSETS = shared_assets()
SLOW = 1.10  # a launch this much slower than the median of medians is counted slow
DIAGNOSTICS_PERIOD_S = 1.5  # nodes publish their status every second


def launch_medians(ws: Path, env: dict[str, str], backend: str, parameters: dict, frames: list, launches: int,
                   count: int, domain: int) -> tuple[list[float | None], list[float | None]]:
    """Each launch's median latency in ms, and the median inference time the node itself reported on
    /diagnostics at the end (None for a launch that never answered or did not say)."""
    from vision_msgs.msg import Detection2DArray

    package = f"yolo_{backend}"
    medians, inference = [], []
    with tempfile.TemporaryDirectory() as cache:
        command = node_command(ws, package, package, {**parameters, "cache_dir": cache},
                               {"image_raw": "/camera/image_raw"})
        for index in range(launches + 1):  # the first only fills the cache
            node = NodeUnderTest(command, env, f"/{package}/detections", Detection2DArray, frames, domain + index)
            try:
                answered = node.start() is not None
                if index:
                    latencies = node.lockstep_latencies(count) if answered else []
                    medians.append(round(statistics.median(latencies) * 1000, 1) if latencies else None)
                    node.spin_for(DIAGNOSTICS_PERIOD_S)  # the node's status after the last frame
                    inference.append(float(node.diagnostics["inference_p50_ms"])
                                     if node.diagnostics.get("inference_p50_ms") else None)
            finally:
                node.close()
    return medians, inference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="launches", description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--weights", type=Path, default=ASSETS / "models" / "yolov8n_int8.onnx")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", type=Path, default=source_checkout() / "out" / "launches")
    args = parser.parse_args(argv)
    ws = source_checkout() / ".cache" / "bench_ws"
    create_workspace(ws, [("yolo", args.backend)])
    colcon_build(ws)
    parameters = {"model": str(args.weights), **parse_assignments(args.param, ["precision", "inference_threads",
                                                                               "allow_spinning", "calibration_data"])}
    medians, inference = launch_medians(ws, workspace_env(ws), args.backend, parameters,
                                        bench_frames(ASSETS / "rosbags" / "mmpose_street_demo_5f"), args.launches,
                                        args.frames, 90)
    answered = [m for m in medians if m is not None]
    middle = round(statistics.median(answered), 1) if answered else None
    slow = [m for m in answered if middle and m > middle * SLOW]
    print(f"yolo_{args.backend} {parameters}: e2e p50 per launch (ms): {medians}")
    print(f"the node's own inference p50 per launch (ms, its /diagnostics): {inference}")
    print(f"median of medians {middle} ms; {len(slow)} of {len(answered)} launches over {SLOW:.2f}x it: {slow}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "launches.json").write_text(json.dumps({"parameters": parameters, "medians_ms": medians,
                                                        "inference_p50_ms": inference}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3))
    axes.plot(range(1, len(medians) + 1), [m or 0 for m in medians], marker="o")
    axes.set(xlabel="launch", ylabel="e2e p50 ms", title=f"yolo_{args.backend}: median latency of each launch")
    figure.tight_layout()
    figure.savefig(args.out / "launches.png", dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
