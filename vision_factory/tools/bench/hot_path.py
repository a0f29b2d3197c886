"""Where a frame's time goes inside a node, stage by stage, without ROS transport:

    python -m vision_factory.tools.bench.hot_path [--frames 200] [--backend onnx] [--weights PATH] [--profile]

decode (sensor_msgs/Image -> BGR array), preprocess (letterbox -> input tensor), inference (the session
alone), postprocess (decode + NMS), tracking (ByteTrack on the detections, as with `tracker: bytetrack`;
'-' without the trackers library), message (Detection2DArray). Prints p50 per stage in ms for a 640x480
and a 1920x1080 bgr8 frame and an rgb8 one; --profile adds the cProfile top functions of the whole path.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from vision_factory.errors import ConfigError
from vision_factory.loaded_model import load_default_model
from vision_factory.tools.bench.node_probe import percentiles_ms
from vision_factory.tools.workspace import shared_assets
from vision_factory.tracking import DetectionTracker, TrackerSettings

ASSETS = shared_assets()
STAGES = ("decode", "preprocess", "inference", "postprocess", "tracking", "message", "total")
SIZES = {"640x480 bgr8": ((640, 480), "bgr8"), "1920x1080 bgr8": ((1920, 1080), "bgr8"),
         "1920x1080 rgb8": ((1920, 1080), "rgb8")}


def stage_times(runner: Any, msg: Any, frames: int) -> dict[str, float | None]:
    """p50 ms of each stage over `frames` runs of one message."""
    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.ros.messages import detection_array

    model, options = runner.model, {"confidence_threshold": 0.25, "iou_threshold": 0.7, "classes": None,
                                    "max_detections": 300}
    times: dict[str, list[float]] = {name: [] for name in STAGES}
    try:
        tracker: DetectionTracker | None = DetectionTracker(TrackerSettings(kind="bytetrack"))
    except ConfigError:
        tracker = None

    def timed(name: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = call()
        times[name].append(time.perf_counter() - started)
        return value

    for index in range(frames):
        started = time.perf_counter()
        image = timed("decode", lambda: image_to_bgr(msg))
        blob, placement = timed("preprocess", lambda: model.preprocess(image))
        output = timed("inference", lambda: model.session.run({model.session.input_name: blob})[0])
        result = timed("postprocess", lambda: model.postprocess(output, placement, **options))
        if tracker is not None:  # a static frame at 30 Hz: every track is matched, as in a steady scene
            timed("tracking", lambda: tracker.update(result.boxes_xyxy, result.scores, index / 30))
        timed("message", lambda: detection_array(result, msg.header))
        times["total"].append(time.perf_counter() - started)
    return {name: percentiles_ms(values)["p50_ms"] if values else None for name, values in times.items()}


def image_message(source_bgr: np.ndarray, size_wh: tuple[int, int], encoding: str) -> Any:
    from sensor_msgs.msg import Image

    image = cv2.resize(source_bgr, size_wh, interpolation=cv2.INTER_AREA)
    if encoding == "rgb8":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return Image(height=size_wh[1], width=size_wh[0], encoding=encoding, step=size_wh[0] * 3,
                 data=image.tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hot_path", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--weights", type=Path, default=ASSETS / "models" / "yolov8n_int8.onnx")
    parser.add_argument("--image", type=Path, default=ASSETS / "images" / "bus.jpg")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        runner = load_default_model("yolo", args.backend, args.weights, Path(cache))
    source = cv2.imread(str(args.image))
    stages = STAGES
    print(f"p50 ms per stage, {args.frames} frames, {args.backend} ({runner.session.active}), {args.weights.name}")
    print("| frame | " + " | ".join(stages) + " |\n|---|" + "---|" * len(stages))
    for label, (size, encoding) in SIZES.items():
        msg = image_message(source, size, encoding)
        times = stage_times(runner, msg, args.frames)
        print(f"| {label} | " + " | ".join("-" if times[s] is None else str(times[s]) for s in stages) + " |")
    if args.profile:
        msg = image_message(source, (1920, 1080), "bgr8")
        profiler = cProfile.Profile()
        profiler.runcall(stage_times, runner, msg, args.frames)
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
