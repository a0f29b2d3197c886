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
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vision_factory.recorded_images import read_images
from vision_factory.tools.bag_replay import decode
from vision_factory.tools.bench.node_probe import NodeUnderTest, resident_mb
from vision_factory.tools.workspace import (colcon_build, create_workspace, node_command, shared_assets, source_checkout,
                                      workspace_env)

ASSETS = shared_assets()
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


def soak(ws: Path, env: dict[str, str], backend: str, frames: list[Any], count: int, cache_dir: Path,
         domain: int, log: Path | None = None) -> SoakResult:
    """Run `count` frames (recorded bag messages, cycled) through the built yolo_<backend> node of
    workspace `ws`, one at a time."""
    from vision_msgs.msg import Detection2DArray

    package = f"yolo_{backend}"
    command = node_command(ws, package, package, {"cache_dir": str(cache_dir)}, {"image_raw": "/camera/image_raw"})
    node = NodeUnderTest(command, env, f"/{package}/detections", Detection2DArray, decode(frames), domain, log)
    warmup, every = max(1, int(count * WARMUP_FRACTION)), max(1, count // SAMPLES)
    rss: list[tuple[int, float]] = []
    baseline = 0.0
    try:
        if node.start() is None:
            raise RuntimeError(f"the {package} node did not start; see {log}")
        first_sent = len(node.sent)
        for sent in range(1, count + 1):
            node.lockstep_latencies(1, ANSWER_TIMEOUT_S)
            if sent == warmup:
                baseline = resident_mb(node.process.pid)
            if sent % every == 0 or sent == count:
                rss.append((sent, resident_mb(node.process.pid)))
        node.spin_for(0.5)  # a late answer still counts (and would show as a duplicate)
    finally:
        code = node.close()
    soaked = set(node.sent[first_sent:])
    answers = [stamp for stamp, _ in node.arrivals if stamp in soaked]
    return SoakResult(backend, count, len(set(answers)), count - len(set(answers)), len(answers) - len(set(answers)),
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
    parser.add_argument("--domain", type=int, default=78, help="ROS_DOMAIN_ID of the soaked node")
    args = parser.parse_args(argv)
    for path in (args.weights, args.bag):
        if not path.exists():
            print(f"soak: {path} does not exist (pass --weights / --bag)", file=sys.stderr)
            return 2
    ws = source_checkout() / ".cache" / "soak_ws"
    create_workspace(ws, [("yolo", args.backend)], weights={"yolo": str(args.weights.resolve())})
    colcon_build(ws)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache_dir:
        result = soak(ws, workspace_env(ws), args.backend, read_images(args.bag), args.frames, Path(cache_dir),
                      args.domain, log=args.out / "soak_node.log")
    print(table(result))
    write_outputs(result, args.out)
    print(f"[soak] wrote {args.out / 'soak.png'}, soak.csv and soak.json")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
