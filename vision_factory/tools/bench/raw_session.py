"""Raw inference: the backend sessions alone, built as a node builds them, on preprocessed tensors of one
image.

    python -m vision_factory.tools.bench.raw_session --model yolo --backend onnx --image I --iterations N
        --cache-dir D -p model=W [-p NAME=VALUE ...]

Prints one JSON object (active provider/device, p50/p90/p99 ms, frames per second, MB of tensors a frame moves
in and out of the sessions: what a remote backend sends over the network). One iteration runs
every network a frame needs: YOLO and depth one; RTMPose the detector, then the pose network for each
person found. The benchmark runs it in a fresh process per backend so no other runtime's threads or
memory share the measurement.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from vision_factory.generator import plan_package
from vision_factory.loaded_model import load_default_model
from vision_factory.parameters import parse_assignments
from vision_factory.tools.bench.node_probe import percentiles_ms


def _detections(model: Any, image: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    return [(model.session, model.preprocess(image)[0])]


def _poses(model: Any, image: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """The detector once, then the pose network once per person the node would estimate."""
    blob, _ = model.detector.preprocess(image)
    boxes = model(image).boxes_xyxy  # the people found at the node's default thresholds
    crops = [model.estimator.preprocess(image, box)[0] for box in boxes]
    return [(model.detector.session, blob)] + [(model.estimator.session, crop) for crop in crops]


def _depth(model: Any, image: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    return [(model.session, model.preprocess(image))]


# Output kind -> the (session, input tensor) pairs one frame runs.
FEEDS: dict[str, Callable[[Any, np.ndarray], list[tuple[Any, np.ndarray]]]] = {
    "detections": _detections, "poses": _poses, "depth": _depth}


def measure(model: str, backend: str, image_path: Path, iterations: int, cache_dir: Path,
            overrides: dict[str, Any]) -> dict[str, Any]:
    runner = load_default_model(model, backend, overrides.pop("model"), cache_dir, **overrides)
    feeds = FEEDS[runner.manifest.output](runner.model, cv2.imread(str(image_path)))

    def run_once() -> int:
        """One frame; the bytes of the tensors it moved in and out of the sessions."""
        moved = 0
        for session, tensor in feeds:
            outputs = session.run({session.input_name: tensor})
            moved += tensor.nbytes + sum(output.nbytes for output in outputs)
        return moved

    for _ in range(max(3, iterations // 10)):
        run_once()
    durations = []
    for _ in range(iterations):
        started = time.perf_counter()
        run_once()
        durations.append(time.perf_counter() - started)
    return {"active": runner.session.active, **percentiles_ms(durations),
            "fps": round(len(durations) / sum(durations), 1), "tensor_mb": round(run_once() / 1e6, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raw_session", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolo")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a node parameter, e.g. -p model=W (values parsed as YAML)")
    args = parser.parse_args(argv)
    overrides = parse_assignments(args.param, plan_package(args.model, args.backend).defaults())
    print(json.dumps(measure(args.model, args.backend, args.image, args.iterations, args.cache_dir, overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
