"""The main job, end to end: generate a YOLO node package, colcon build it, run the node on a recorded
bag with ByteTrack on, print every frame's detections (with their track ids) and save the annotated last
frame.

    scripts/demo [--bag PATH] [--weights PATH] [--backend onnx|openvino|cuda|rocm|tensorrt] [--record PATH]

What the node published (detections, label info, debug images, diagnostics) is also recorded into an
MCAP rosbag2 (default out/demo_bag) that Foxglove Studio and `ros2 bag play` open as it is.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2

from vision_factory.image_conversion import image_to_bgr
from vision_factory.recorded_images import read_images
from vision_factory.tools.bag_replay import ReplayProbe
from vision_factory.tools.recording import Recorder
from vision_factory.tools.workspace import (colcon_build, create_workspace, node_command, shared_assets, source_checkout,
                                      start_process, stop, workspace_env)

ASSETS = shared_assets()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--bag", type=Path, default=ASSETS / "rosbags" / "mmpose_street_demo_5f")
    parser.add_argument("--weights", type=Path, default=ASSETS / "models" / "yolov8n_int8.onnx")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--workspace", type=Path, default=source_checkout() / ".cache" / "demo_ws")
    parser.add_argument("--out", type=Path, default=source_checkout() / "out")
    parser.add_argument("--record", type=Path, default=None,
                        help="the rosbag2 folder to record the node's outputs into (default: OUT/demo_bag; "
                             "replaced if it exists)")
    args = parser.parse_args(argv)
    for path in (args.bag, args.weights):
        if not path.exists():
            print(f"demo: {path} does not exist (pass --bag / --weights)", file=sys.stderr)
            return 2
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray, LabelInfo

    print(f"[demo] generating yolo_{args.backend} into {args.workspace}/src and building it with colcon")
    package = create_workspace(args.workspace, [("yolo", args.backend)], weights={"yolo": str(args.weights.resolve())})[0]
    colcon_build(args.workspace)
    env = workspace_env(args.workspace)
    command = node_command(args.workspace, package, package, remaps={"image_raw": "/camera/image_raw"},
                           params_files=[source_checkout() / "config" / "demo.yaml"])
    print(f"[demo] starting: {' '.join(command)}")
    node = start_process(command, env)
    detections_topic, debug_topic = f"/{package}/detections", f"/{package}/debug_image"
    labels_topic = f"/{package}/label_info"
    outputs = {detections_topic: Detection2DArray, debug_topic: Image, labels_topic: LabelInfo,
               "/diagnostics": DiagnosticArray}
    record = args.record or args.out / "demo_bag"
    shutil.rmtree(record, ignore_errors=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(record, outputs)
    probe = ReplayProbe(outputs, latched=(labels_topic,), recorder=recorder)
    try:
        if not probe.wait_for_message(labels_topic, 600, alive=lambda: node.poll() is None):
            print(f"demo: the node did not start (exit code {node.poll()})", file=sys.stderr)
            return 1
        frames = read_images(args.bag)
        print(f"[demo] replaying {len(frames)} frames of {frames[0].topic} from {args.bag} at the recorded rate")
        probe.replay("/camera/image_raw", frames)
        probe.spin_until(lambda: len(probe.outputs[debug_topic]) >= len(frames), 20)
    finally:
        probe.close()
        recorder.close()
        code = stop(node)
    answers = probe.outputs[detections_topic]
    for index, answer in enumerate(answers, 1):
        stamp = answer.header.stamp.sec + answer.header.stamp.nanosec * 1e-9
        print(f"frame {index} stamp {stamp:.3f} frame_id {answer.header.frame_id}: "
              f"{len(answer.detections)} detections")
        for det in answer.detections:
            box, hypothesis = det.bbox, det.results[0].hypothesis
            x1, y1 = box.center.position.x - box.size_x / 2, box.center.position.y - box.size_y / 2
            track = f"#{det.id}" if det.id else ""
            print(f"    {track:>4} {hypothesis.class_id:<14} {hypothesis.score:.3f}  box x1={x1:.0f} y1={y1:.0f} "
                  f"w={box.size_x:.0f} h={box.size_y:.0f}")
    if probe.outputs[debug_topic]:
        args.out.mkdir(parents=True, exist_ok=True)
        image_path = args.out / "demo_last_frame.png"
        cv2.imwrite(str(image_path), image_to_bgr(probe.outputs[debug_topic][-1]))
        print(f"[demo] annotated last frame: {image_path}")
    print(f"[demo] recorded the node's outputs to {record} (MCAP; Foxglove Studio or `ros2 bag play` open it)")
    print(f"[demo] {len(answers)} answers to {len(frames)} frames; node exited with {code}")
    if len(answers) < len(frames):
        # As with `ros2 bag play`, frames come at the recorded rate whatever the machine's speed.
        print("[demo] the node serves the newest frame and skips frames it cannot keep up with: a slow or busy "
              "machine answers fewer")
    return 0 if answers and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
