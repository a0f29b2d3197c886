"""One node serving N cameras against N nodes of one camera each: answers per second and peak memory, measured
in one run so the ratios are fair.

    python -m vision_factory.tools.bench.cameras [--package yolo_onnx] [--cameras 1,2,4] [--rate 10]
        [--seconds 20] [--out out/bench] [--weights W] [-p max_batch_size=4 ...]

Every camera sends the bag's frames, 640x480, at --rate Hz on /cam<i>/image_raw. For each N: one node with the
`cameras` parameter N, then N nodes of one camera each (named <package>_<i>). Figures: answers per second (all
cameras, and the least and most answered camera), the sum of the processes' peak resident memory (VmHWM) and
the one node's share of the N nodes' memory. Writes cameras.json and cameras.png into --out and prints the
table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vision_factory.generator import plan_package
from vision_factory.parameters import parse_assignments
from vision_factory.tools.bench.node_probe import resident_mb
from vision_factory.tools.workspace import (colcon_build, create_workspace, node_command, shared_assets,
                                            source_checkout, start_process, stop, workspace_env)

READY_S = 180.0  # a first launch may export


@dataclass(frozen=True)
class Setup:
    """`cameras` cameras served by `nodes` processes (1: one node with the cameras parameter; else one each)."""

    cameras: int
    nodes: int

    @property
    def name(self) -> str:
        return f"1 node, {self.cameras} camera{'s' * (self.cameras > 1)}" if self.nodes == 1 else \
            f"{self.nodes} nodes"

    def commands(self, ws: Path, package: str, parameters: dict[str, Any]) -> list[list[str]]:
        if self.nodes == 1 and self.cameras > 1:
            return [node_command(ws, package, package, {**parameters, "cameras": self.cameras},
                                 {f"cam{i}/image_raw": f"/cam{i}/image_raw" for i in range(self.cameras)})]
        return [node_command(ws, package, package, parameters, {"image_raw": f"/cam{i}/image_raw",
                                                               "__node": f"{package}_{i}"})
                for i in range(self.cameras)]

    def answer_topics(self, package: str, answers: str) -> list[str]:
        """Per camera, the topic its answers come on."""
        if self.nodes == 1 and self.cameras > 1:
            return [f"/{package}/cam{i}/{answers}" for i in range(self.cameras)]
        return [f"/{package}_{i}/{answers}" for i in range(self.cameras)]


def measure(setup: Setup, ws: Path, env: dict[str, str], package: str, parameters: dict[str, Any],
            frames: list[Any], rate_hz: float, seconds: float, domain: int, log_dir: Path) -> dict[str, Any]:
    """Start the setup's processes, wait for every camera's first answer, then send every camera frames at
    rate_hz for `seconds` and count the answers."""
    from vision_factory.manifest import load_manifest
    from vision_factory.tools.bag_replay import ReplayProbe

    from sensor_msgs.msg import Image

    kind = load_manifest(package.rsplit("_", 1)[0]).output_kind
    results = next(topic for topic in kind.topics if topic.per_frame)
    topics = setup.answer_topics(package, results.name)
    processes = []
    probe = ReplayProbe({topic: results.message_class() for topic in topics}, domain_id=domain,
                        name="cameras_probe")
    try:
        for index, command in enumerate(setup.commands(ws, package, parameters)):
            with open(log_dir / f"cameras-{setup.cameras}-{setup.nodes}-{index}.log", "w") as log:
                processes.append(start_process(command, {**env, "ROS_DOMAIN_ID": str(domain)}, stdout=log,
                                               stderr=subprocess.STDOUT))
        publishers = [probe.node.create_publisher(Image, f"/cam{i}/image_raw", 10) for i in range(setup.cameras)]

        def send_all(count: list[int]) -> None:
            for publisher in publishers:
                publisher.publish(frames[count[0] % len(frames)])
            count[0] += 1

        sent = [0]
        deadline = time.monotonic() + READY_S
        while not all(probe.outputs[topic] for topic in topics):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"{setup.name}: not every camera was answered; see the logs in {log_dir}")
            send_all(sent)
            probe.spin_until(lambda: False, 0.5)
        probe.spin_until(lambda: False, 1.0)  # answers to frames sent while waiting come in first
        before = [len(probe.outputs[topic]) for topic in topics]
        start = due = time.monotonic()
        while time.monotonic() - start < seconds:
            if time.monotonic() >= due:
                send_all(sent)
                due += 1.0 / rate_hz
            probe.spin(0.002)
        answered = [len(probe.outputs[topic]) - b for topic, b in zip(topics, before)]
        memory = sum(resident_mb(p.pid, "VmHWM") for p in processes)
    finally:
        probe.close()
        for process in processes:
            stop(process)
    return {"setup": setup.name, "cameras": setup.cameras, "nodes": setup.nodes,
            "answers_per_s": round(sum(answered) / seconds, 2),
            "camera_min_per_s": round(min(answered) / seconds, 2),
            "camera_max_per_s": round(max(answered) / seconds, 2), "peak_rss_mb": round(memory, 1)}


def table(rows: list[dict[str, Any]], rate_hz: float) -> str:
    lines = [f"Every camera sends {rate_hz:g} frames/s.", "",
             "| cameras | setup | answers/s, all cameras | per camera, least - most | peak RSS MiB, all processes "
             "| memory against N nodes |", "|---|---|---|---|---|---|"]
    for row in rows:
        separate = next(r for r in rows if r["cameras"] == row["cameras"] and r["nodes"] == row["cameras"])
        lines.append(f"| {row['cameras']} | {row['setup']} | {row['answers_per_s']} | {row['camera_min_per_s']} - "
                     f"{row['camera_max_per_s']} | {row['peak_rss_mb']} | "
                     f"{row['peak_rss_mb'] / separate['peak_rss_mb']:.0%} |")
    return "\n".join(lines)


def write_plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (answers, memory) = plt.subplots(1, 2, figsize=(10, 4))
    counts = sorted({r["cameras"] for r in rows})
    for node_per_camera, label, offset in ((False, "one node", -0.2), (True, "a node per camera", 0.2)):
        group = [next(r for r in rows if r["cameras"] == n and r["nodes"] == (n if node_per_camera else 1))
                 for n in counts]
        answers.bar([n + offset for n in counts], [r["answers_per_s"] for r in group], width=0.4, label=label)
        memory.bar([n + offset for n in counts], [r["peak_rss_mb"] for r in group], width=0.4, label=label)
    answers.set(xlabel="cameras", ylabel="answers/s, all cameras", xticks=counts)
    memory.set(xlabel="cameras", ylabel="peak RSS MiB, all processes", xticks=counts)
    answers.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "cameras.png", dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    from vision_factory.tools.bench.compare import bench_frames

    assets = shared_assets()
    parser = argparse.ArgumentParser(prog="cameras", description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="yolo_onnx", help="a generated package, <model>_<backend>")
    parser.add_argument("--weights", type=Path, default=assets / "models" / "yolov8n_int8.onnx")
    parser.add_argument("--cameras", default="1,2,4")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second of every camera")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bag", type=Path, default=assets / "rosbags" / "mmpose_street_demo_5f")
    parser.add_argument("--out", type=Path, default=source_checkout() / "out" / "bench")
    parser.add_argument("--workspace", type=Path, default=source_checkout() / ".cache" / "bench_ws")
    parser.add_argument("--domain", type=int, default=78)
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a node parameter for every node (e.g. -p max_batch_size=4 with a .pt --weights)")
    args = parser.parse_args(argv)
    model, backend = args.package.rsplit("_", 1)
    create_workspace(args.workspace, [(model, backend)])
    colcon_build(args.workspace)
    env, frames = workspace_env(args.workspace), bench_frames(args.bag)
    args.out.mkdir(parents=True, exist_ok=True)
    parameters = {"model": str(args.weights.resolve()), "cache_dir": str(args.out / "cameras_cache"),
                  **parse_assignments(args.param, plan_package(model, backend).defaults())}
    rows = []
    for count in (int(n) for n in args.cameras.split(",")):
        for setup in dict.fromkeys([Setup(count, 1), Setup(count, count)]):
            print(f"[cameras] {setup.name} ...", file=sys.stderr)
            rows.append(measure(setup, args.workspace, env, args.package, parameters, frames, args.rate,
                                args.seconds, args.domain, args.out))
    text = table(rows, args.rate)
    (args.out / "cameras.json").write_text(json.dumps(rows, indent=2))
    write_plot(rows, args.out)
    print(text)
    print(f"[cameras] wrote cameras.json and cameras.png into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
