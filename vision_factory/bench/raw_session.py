"""Raw inference: the backend session alone, built as a node builds it, on one preprocessed tensor.

    python -m vision_factory.bench.raw_session --backend onnx --weights W --image I --iterations N --cache-dir D

Prints one JSON object (active provider/device, p50/p90/p99 ms, frames per second). The benchmark runs
it in a fresh process per backend so no other runtime's threads or memory share the measurement.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2

from vision_factory.bench.node_probe import percentiles_ms
from vision_factory.runner import default_runner


def measure(backend: str, weights: Path, image_path: Path, iterations: int, cache_dir: Path) -> dict[str, Any]:
    runner = default_runner("yolo", backend, weights, cache_dir)
    feed = {runner.session.input_name: runner.model.preprocess(cv2.imread(str(image_path)))[0]}
    for _ in range(max(3, iterations // 10)):
        runner.session.run(feed)
    durations = []
    for _ in range(iterations):
        started = time.perf_counter()
        runner.session.run(feed)
        durations.append(time.perf_counter() - started)
    return {"active": runner.session.active, **percentiles_ms(durations),
            "fps": round(len(durations) / sum(durations), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raw_session", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.backend, args.weights, args.image, args.iterations, args.cache_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
