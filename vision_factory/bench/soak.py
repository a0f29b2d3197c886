"""Soak: thousands of frames through one running node, checking that every frame gets exactly one answer
and that the node's resident memory stays flat after warm-up.

    scripts/soak [--frames 5000] [--backend onnx] [--weights PATH] [--bag PATH] [--out out/]

Frames are the bag's, cycled, each with its own stamp, sent one at a time: the next goes out when the
answer to the previous one is in (or after ANSWER_TIMEOUT_S), so no frame is dropped by the node's
latest-frame policy and every sent frame must be answered. Resident memory (VmRSS of the node process)
is sampled as it goes; growth is measured from the end of warm-up to the end. Prints a table and writes
soak.json, soak.csv and soak.png (RSS over frames) into --out.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vision_factory.bag_replay import ReplayProbe, read_images
from vision_factory.workspace import (colcon_build, create_workspace, node_command, source_checkout, stop,
                                      workspace_env)

ASSETS = source_checkout().parent / "shared" / "assets"
ANSWER_TIMEOUT_S = 10.0
WARMUP_FRACTION = 0.1  # frames before the memory baseline: allocators and runtimes settle first
MAX_GROWTH = 0.05
SAMPLES = 100  # RSS samples over the run


@dataclass
class SoakResult:
    """What a soak run measured. `rss_mb` holds (frames sent, VmRSS in MiB) samples."""

    backend: str
    frames: int
    answered: int
    unanswered: int
    duplicates: int
    rss_after_warmup_mb: float
    rss_end_mb: float
    rss_mb: list[tuple[int, float]]
    exit_code: int

    @property
    def growth(self) -> float:
        return self.rss_end_mb / self.rss_after_warmup_mb - 1.0

    @property
    def passed(self) -> bool:
        """Every frame answered exactly once, memory grew less than MAX_GROWTH, and a clean exit."""
        return (self.answered == self.frames and self.duplicates == 0 and self.growth < MAX_GROWTH
                and self.exit_code == 0)


def resident_mb(pid: int) -> float:
    """VmRSS of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def soak(ws: Path, env: dict[str, str], backend: str, frames: list[Any], count: int, cache_dir: Path,
         domain: int | None = None, log: Path | None = None) -> SoakResult:
    """Run `count` frames through the built yolo_<backend> node of workspace `ws`, one at a time."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray, LabelInfo

    package = f"yolo_{backend}"
    detections, labels = f"/{package}/detections", f"/{package}/label_info"
    images = [deserialize_message(frame.rawdata, Image) for frame in frames]
    command = node_command(ws, package, package, {"cache_dir": str(cache_dir)}, {"image_raw": "/camera/image_raw"})
    run_env = {**env, **({"ROS_DOMAIN_ID": str(domain)} if domain is not None else {})}
    with open(log or Path("/dev/null"), "w") as out:
        process = subprocess.Popen(command, env=run_env, stdout=out, stderr=subprocess.STDOUT)
    probe = ReplayProbe({detections: Detection2DArray, labels: LabelInfo}, domain_id=domain, latched=(labels,))
    publisher = probe.node.create_publisher(Image, "/camera/image_raw", 10)
    answers = probe.outputs[detections]
    warmup = max(1, int(count * WARMUP_FRACTION))
    every = max(1, count // SAMPLES)
    rss: list[tuple[int, float]] = []
    baseline = 0.0
    try:
        if not probe.wait_for_message(labels, 300, alive=lambda: process.poll() is None):
            raise RuntimeError(f"the {package} node did not start (exit code {process.poll()})")
        probe.spin_until(lambda: publisher.get_subscription_count() > 0, 10)
        for index in range(count):
            image = images[index % len(images)]
            image.header.stamp.sec, image.header.stamp.nanosec = 1_000_000 + index // 30, index % 30 * 33_000_000
            expected = len(answers) + 1
            publisher.publish(image)
            probe.spin_until(lambda: len(answers) >= expected, ANSWER_TIMEOUT_S)
            if index + 1 == warmup:
                baseline = resident_mb(process.pid)
            if (index + 1) % every == 0 or index + 1 == count:
                rss.append((index + 1, resident_mb(process.pid)))
        probe.spin_until(lambda: False, 0.5)  # a late answer still counts (and would show as a duplicate)
    finally:
        probe.close()
        code = stop(process)
    stamps = [(a.header.stamp.sec, a.header.stamp.nanosec) for a in answers]
    return SoakResult(backend, count, len(set(stamps)), count - len(set(stamps)), len(stamps) - len(set(stamps)),
                      round(baseline, 1), round(rss[-1][1], 1), rss, code)


def table(result: SoakResult) -> str:
    rows = [("backend", result.backend), ("frames sent", result.frames), ("answered", result.answered),
            ("unanswered", result.unanswered), ("duplicate answers", result.duplicates),
            ("RSS after warm-up (MiB)", result.rss_after_warmup_mb), ("RSS at the end (MiB)", result.rss_end_mb),
            ("RSS growth", f"{result.growth:+.1%} (limit {MAX_GROWTH:.0%})"), ("node exit code", result.exit_code),
            ("verdict", "pass" if result.passed else "FAIL")]
    return "\n".join(["| | |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows])


def write_outputs(result: SoakResult, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps({**asdict(result), "growth": result.growth}, indent=2))
    (out / "soak.csv").write_text("frames,rss_mib\n" + "".join(f"{n},{mb}\n" for n, mb in result.rss_mb))
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.plot(*zip(*result.rss_mb), marker=".")
    axes.axhline(result.rss_after_warmup_mb * (1 + MAX_GROWTH), color="red", linestyle="--",
                 label=f"warm-up RSS + {MAX_GROWTH:.0%}")
    axes.set(xlabel="frames", ylabel="VmRSS (MiB)", title=f"yolo_{result.backend}: resident memory over a soak")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out / "soak.png", dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--weights", type=Path, default=ASSETS / "models" / "yolov8n_int8.onnx")
    parser.add_argument("--bag", type=Path, default=ASSETS / "rosbags" / "mmpose_street_demo_5f")
    parser.add_argument("--out", type=Path, default=source_checkout() / "out")
    args = parser.parse_args(argv)
    for path in (args.weights, args.bag):
        if not path.exists():
            print(f"soak: {path} does not exist (pass --weights / --bag)", file=sys.stderr)
            return 2
    ws = source_checkout() / ".cache" / "soak_ws"
    create_workspace(ws, [("yolo", args.backend)], weights=str(args.weights.resolve()))
    colcon_build(ws)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache_dir:
        result = soak(ws, workspace_env(ws), args.backend, read_images(args.bag), args.frames, Path(cache_dir),
                      log=args.out / "soak_node.log")
    print(table(result))
    write_outputs(result, args.out)
    print(f"[soak] wrote {args.out / 'soak.png'}, soak.csv and soak.json")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
