"""Cold start: seconds from starting a node process to its first published detection, with an empty
export cache and with a warm one, for the onnx and openvino YOLO nodes.

    scripts/bench_cold_start [--repeats N] [--out out/]

Frames are published every 50 ms from the moment the process starts, so the figure is what a robot
sees: process start -> first Detection2DArray received by another process.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from vision_factory.recorded_images import read_images
from vision_factory.tools.bag_replay import decode
from vision_factory.tools.bench.node_probe import NodeUnderTest
from vision_factory.tools.workspace import (colcon_build, create_workspace, node_command, shared_assets, source_checkout,
                                      workspace_env)

ASSETS = shared_assets()


def first_detection(ws: Path, env: dict, backend: str, weights: Path, cache_dir: Path, domain: int,
                    frames: list) -> float | None:
    """Start the node and time its first answer (None if it never came)."""
    from vision_msgs.msg import Detection2DArray

    package = f"yolo_{backend}"
    command = node_command(ws, package, package, {"model": str(weights), "cache_dir": str(cache_dir)},
                           {"image_raw": "/camera/image_raw"})
    node = NodeUnderTest(command, env, f"/{package}/detections", Detection2DArray, frames, domain)
    try:
        return node.start()
    finally:
        node.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench_cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=source_checkout() / "out")
    args = parser.parse_args(argv)
    weights = {"int8 .onnx": ASSETS / "models" / "yolov8n_int8.onnx",
               ".pt checkpoint": ASSETS / "models" / "derived" / "yolov8n_from_int8_onnx.pt"}
    bag = ASSETS / "rosbags" / "mmpose_street_demo_5f"
    for path in [*weights.values(), bag]:
        if not path.exists():
            print(f"bench_cold_start: {path} is missing", file=sys.stderr)
            return 2
    frames = decode(read_images(bag)[:1])
    ws = source_checkout() / ".cache" / "bench_ws"
    create_workspace(ws, [("yolo", "onnx"), ("yolo", "openvino")])
    colcon_build(ws)
    env = workspace_env(ws)
    rows, domain = [], 60
    for backend in ("onnx", "openvino"):
        for label, path in weights.items():
            samples: dict[str, list[float]] = {"empty": [], "warm": []}
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as cache_dir:
                    for state in ("empty", "warm"):  # the first launch fills the cache the second uses
                        domain += 1
                        seconds = first_detection(ws, env, backend, path, Path(cache_dir), domain, frames)
                        if seconds is not None:
                            samples[state].append(seconds)
            for state, values in samples.items():
                rows.append({"backend": backend, "weights": label, "cache": state, "runs": len(values),
                             "median_s": round(statistics.median(values), 2) if values else None,
                             "min_s": round(min(values), 2) if values else None,
                             "max_s": round(max(values), 2) if values else None})
    header = "| backend | weights | cache | runs | median s | min s | max s |\n|---|---|---|---|---|---|---|"
    table = "\n".join([header] + [f"| {r['backend']} | {r['weights']} | {r['cache']} | {r['runs']} | "
                                  f"{r['median_s']} | {r['min_s']} | {r['max_s']} |" for r in rows])
    print("Process start -> first detection received by another process:")
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold_start.json").write_text(json.dumps(rows, indent=2))
    (args.out / "cold_start.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
