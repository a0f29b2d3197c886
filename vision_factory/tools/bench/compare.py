"""`vision-factory bench`: how fast, how lean and how quick to start each node is, next to what users run
today, measured in one run so the ratios are fair.

    vision-factory bench [--quick] [--out out/bench]
                         [--models yolo,rtmpose,depth_anything,grounding_dino,sam,florence2]
                         [--backends onnx,openvino,cuda] [--server-url grpc://HOST:PORT]

For each model x backend that can run on this machine, and for the model's baseline, with the same weights
and input size:
  yolo            baseline: an rclpy node calling ultralytics predict per frame (as yolo_ros does);
                  weights: the real YOLOv8n checkpoint in ../shared/assets
  rtmpose         baseline: rtmlib's Body pipeline in an rclpy node; the real YOLOX-nano person detector,
                  and the RTMPose-m architecture (vision_factory.tools.rtmpose_architecture: mmpose's layer
                  sizes, random weights, a dynamic batch axis; no real RTMPose weights here) (--quick: a stand-in
                  with RTMPose's signature but almost no compute)
  depth_anything  baseline: transformers' depth-estimation pipeline in an rclpy node; the real
                  Depth-Anything-V2-Small architecture built from its config (speed does not depend on
                  the weights' values; --quick uses a tiny one)
  grounding_dino  baseline: transformers' zero-shot-object-detection pipeline in an rclpy node; the real
                  grounding-dino-tiny architecture (Swin-T, BERT-base) built from its config, prompt
                  "person . bus . car" (--quick: a small config)
  sam             baseline: transformers' SamModel with its processor in an rclpy node (it has no pipeline
                  for prompts); the real SAM ViT-B architecture built from its config, 4 fixed boxes a frame
                  (--quick: a small config); the raw figure's runs are the encoder, then the decoder
  florence2       baseline: transformers' Florence2ForConditionalGeneration.generate(num_beams=1) with its
                  processor in an rclpy node; the real Florence-2-base architecture built from its config,
                  task caption, at most 48 new tokens (--quick: a small config); the raw figures add the time to
                  the first token and tokens per second (the baseline's: transformers' generate timed alone)
Figures:
  raw inference   the backend sessions alone on preprocessed tensors: p50/p90/p99, frames per second, and
                  the p50 of each network run of a frame (where a frame takes several)
  end to end      640x480 frames sent one at a time into the node process; frame stamp -> answer
                  received by another process: p50/p90/p99
  overhead        end-to-end p50 / raw p50 (1.0 is the physical limit)
  throughput      answers per second when frames come at increasing rates (latest-frame policy: the
                  rest are dropped), and the node's CPU use at the highest rate
  cold start      process start -> first answer, with an empty and with a warm export cache
  memory          peak resident memory (VmHWM) of the node process
  network hop     remote rows (--server-url: a server serving `vision-factory export --repository` of the same
                  weights): the round trip against the local onnx session, the MB a frame moves and what
                  1 GbE / 10 GbE would add to a loopback figure
Writes bench.json, bench.md and per model bench_<model>_latency.png, _throughput.png, _memory.png into
--out and prints the table. --quick (CI) runs every code path with a few frames per pair.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vision_factory.manifest import load_manifest
from vision_factory.parameters import node_parameters
from vision_factory.tools.accuracy_report import COMPARABLE_OUTPUTS, precision_choices
from vision_factory.tools.accuracy_report import report as accuracy_report
from vision_factory.tools.bench.baselines import NODES
from vision_factory.tools.bench.node_probe import NodeUnderTest, percentiles_ms
from vision_factory.tools.workspace import (colcon_build, create_workspace, node_command, shared_assets, source_checkout,
                                      start_process, stop, workspace_env)

ASSETS = shared_assets()
FRAME_WH = (640, 480)
# Backend -> the module it needs to run here; tensorrt also needs a GPU.
RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino", "cuda": "torch", "rocm": "torch", "tensorrt": "tensorrt",
            "remote": "tritonclient"}
# Links a remote backend's frames could cross instead of loopback: name -> bytes per second.
LINKS = {"1 GbE": 125e6, "10 GbE": 1.25e9}


@dataclass(frozen=True)
class Plan:
    """How much of everything to measure."""

    raw_iterations: int
    lockstep_frames: int
    rates_hz: tuple[float, ...]
    seconds_per_rate: float
    answer_timeout_s: float = 10.0  # how long a frame's answer is waited for (lockstep; the sweep's last frame)


QUICK = Plan(10, 8, (10.0, 40.0), 1.0)


@dataclass(frozen=True)
class Suite:
    """One model's nodes and what users run for it today (see the module docstring)."""

    model: str
    baseline: str  # its name in the tables
    baseline_kind: str  # which node of vision_factory.tools.bench.baselines
    raw_backend: str  # the baseline runs this backend's network and runtime: the same raw figure
    full: Plan
    reference_raw: bool = False  # the baseline's raw figure: the library's own call timed alone (raw_session)

    def plan(self, quick: bool) -> Plan:
        return QUICK if quick else self.full

    @property
    def answers(self) -> str:
        """The per-frame topic, under our nodes and the baseline's alike, that the suite listens to."""
        return NODES[self.baseline_kind][1]

    @property
    def baseline_topic(self) -> str:
        return f"/{NODES[self.baseline_kind][0]}/{self.answers}"

    def answer_class(self) -> Any:
        return load_manifest(self.model).output_kind.topic(self.answers).message_class()


SUITES = {s.model: s for s in (
    # Up to 80 Hz: on a CPU with AMX the bf16 and int8 nodes answer every frame at 40 Hz.
    Suite("yolo", "ultralytics predict node", "yolo", "cuda", Plan(200, 200, (5.0, 10.0, 20.0, 40.0, 80.0), 5.0)),
    Suite("rtmpose", "rtmlib Body node", "pose", "onnx", Plan(200, 200, (5.0, 10.0, 20.0, 40.0), 5.0)),
    # About a second a frame on a 2-core CPU: fewer frames, slower rates.
    Suite("depth_anything", "transformers pipeline node", "depth", "cuda", Plan(30, 40, (0.5, 1.0, 2.0, 4.0), 10.0)),
    # Several seconds a frame at full size on a 2-core CPU (the pipeline: one network run per phrase).
    Suite("grounding_dino", "transformers zero-shot pipeline node", "zero_shot", "cuda",
          Plan(5, 6, (0.05, 0.2), 40.0, answer_timeout_s=90.0)),
    # Seconds a frame's encoding at full size (ViT-B at 1024 x 1024).
    Suite("sam", "transformers SamModel node", "sam", "cuda", Plan(5, 6, (0.05, 0.2), 40.0, answer_timeout_s=90.0)),
    # A second or more a frame at full size: the vision tower at 768 x 768, then a token at a time.
    Suite("florence2", "transformers generate node", "florence2", "cuda",
          Plan(5, 6, (0.1, 0.5), 30.0, answer_timeout_s=120.0), reference_raw=True),
)}
GROUNDING_PROMPT = "person . bus . car"
SAM_BOXES = "40,120,200,470; 230,100,330,420; 380,150,470,440; 0,250,640,480"  # on the 640x480 frames
FLORENCE2_TASK, FLORENCE2_TOKENS = "caption", 48


def suite_weights(model: str, quick: bool, folder: Path, yolo_weights: Path) -> tuple[dict[str, str], list[str]]:
    """The node parameters naming `model`'s benchmark weights, and the baseline's arguments for the same."""
    from vision_factory.tools.stand_in_models import (batched_pose_model, depth_anything_checkpoint,
                                                      florence2_checkpoint, grounding_dino_checkpoint, sam_checkpoint)

    folder.mkdir(parents=True, exist_ok=True)
    if model == "yolo":
        return {"model": str(yolo_weights)}, ["yolo", "--weights", str(yolo_weights), "--imgsz", "640"]
    if model == "rtmpose":
        if quick:
            pose = batched_pose_model(folder / "rtmpose_stand_in.onnx")
        else:
            from vision_factory.tools.rtmpose_architecture import export_rtmpose

            pose = folder / "rtmpose_m.onnx"
            if not pose.is_file():
                export_rtmpose(pose, "m")
        detector = ASSETS / "models" / "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx"
        return {"model": str(pose), "detector_model": str(detector)}, ["pose", "--detector", str(detector),
                                                                        "--pose", str(pose)]
    if model == "grounding_dino":
        checkpoint = folder / f"grounding_dino_{'small' if quick else 'full'}"
        if not checkpoint.is_dir():
            grounding_dino_checkpoint(checkpoint, size="small" if quick else "full")
        return ({"model": str(checkpoint), "prompt": GROUNDING_PROMPT},
                ["zero_shot", "--model", str(checkpoint), "--prompt", GROUNDING_PROMPT])
    if model == "sam":
        checkpoint = folder / f"sam_{'small' if quick else 'full'}"
        if not checkpoint.is_dir():
            sam_checkpoint(checkpoint, size="small" if quick else "full")
        return {"model": str(checkpoint), "boxes": SAM_BOXES}, ["sam", "--model", str(checkpoint), "--boxes", SAM_BOXES]
    if model == "florence2":
        checkpoint = folder / f"florence2_{'small' if quick else 'base'}"
        if not checkpoint.is_dir():
            florence2_checkpoint(checkpoint, size="small" if quick else "base")
        return ({"model": str(checkpoint), "task": FLORENCE2_TASK, "max_new_tokens": FLORENCE2_TOKENS},
                ["florence2", "--model", str(checkpoint), "--task", FLORENCE2_TASK, "--max-new-tokens",
                 str(FLORENCE2_TOKENS)])
    checkpoint = folder / f"depth_anything_{'tiny' if quick else 'small'}"
    if not checkpoint.is_dir():
        depth_anything_checkpoint(checkpoint, size="tiny" if quick else "small")
    return {"model": str(checkpoint)}, ["depth", "--model", str(checkpoint)]


def bench_frames(bag: Path) -> list[Any]:
    """The bag's frames as 640x480 bgr8 sensor_msgs/Image."""
    import cv2

    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.ros.messages import bgr8_image
    from vision_factory.recorded_images import read_images
    from vision_factory.tools.bag_replay import decode

    return [bgr8_image(cv2.resize(image_to_bgr(msg), FRAME_WH, interpolation=cv2.INTER_AREA), msg.header)
            for msg in decode(read_images(bag))]


def runnable_backends(requested: list[str], server_url: str = "") -> tuple[list[str], dict[str, str]]:
    """The requested backends whose runtime is installed (and, for remote, a server given), and why each other
    one is skipped."""
    runnable, skipped = [], {}
    for backend in requested:
        if importlib.util.find_spec(RUNTIMES[backend]) is None:
            skipped[backend] = f"{RUNTIMES[backend]} is not installed"
        elif backend == "remote" and not server_url:
            skipped[backend] = ("no --server-url (a server serving `vision-factory export --repository` of the "
                                "benchmark's weights)")
        elif backend == "rocm" and not _torch_has("hip"):
            skipped[backend] = "this PyTorch is not a ROCm build"
        else:
            runnable.append(backend)
    return runnable, skipped


def _torch_has(build: str) -> bool:
    import torch

    return getattr(torch.version, build, None) is not None


def raw_inference(model: str, backend: str, weights: dict[str, Any], env: dict[str, str], image: Path,
                  cache_dir: Path, plan: Plan, reference: bool = False) -> dict[str, Any]:
    """The backend sessions alone on preprocessed tensors (reference: the library's own call), measured in a
    process of their own."""
    command = [sys.executable, "-m", "vision_factory.tools.bench.raw_session", "--model", model, "--backend", backend,
               "--image", str(image), "--iterations", str(plan.raw_iterations), "--cache-dir", str(cache_dir),
               *(["--reference"] if reference else [])]
    for name, value in weights.items():
        command += ["-p", f"{name}={value}"]
    process = start_process(command, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = (text.decode() for text in process.communicate())
    finally:
        stop(process)
    if process.returncode != 0:
        raise RuntimeError(f"raw inference of {model} on {backend} failed:\n{stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def node_figures(node: NodeUnderTest, plan: Plan) -> dict[str, Any]:
    """Cold start (already timed by the caller), then latency, throughput sweep, CPU and memory."""
    node.spin_for(2.0)  # answers to the frames sent while waiting for the first one come in first
    latencies = node.lockstep_latencies(plan.lockstep_frames, plan.answer_timeout_s)
    sweep = [node.throughput(rate, plan.seconds_per_rate, plan.answer_timeout_s) for rate in plan.rates_hz]
    return {"e2e": percentiles_ms(latencies), "latencies_ms": [round(s * 1000, 2) for s in latencies],
            "sweep": sweep, "peak_rss_mb": round(node.peak_rss_mb(), 1)}


def measure(name: str, command: list[str], answers_topic: str, answer_type: Any, env: dict[str, str],
            frames: list[Any], domain: int, plan: Plan, log_dir: Path, empty_cache_run: bool) -> dict[str, Any]:
    """Launch the node (twice when `empty_cache_run`: the first fills the cache) and take its figures."""
    figures: dict[str, Any] = {"cold_start_empty_s": None}
    launches = ["empty", "warm"] if empty_cache_run else ["warm"]
    for launch in launches:
        node = NodeUnderTest(command, env, answers_topic, answer_type, frames, domain,
                             log_dir / f"{name.replace(' ', '_')}-{launch}.log")
        try:
            seconds = node.start()
            if seconds is None:
                raise RuntimeError(f"{name} never answered; see {node.log}")
            figures[f"cold_start_{launch}_s"] = round(seconds, 2)
            if launch == "warm":
                figures.update(node_figures(node, plan))
        finally:
            node.close()
    return figures


def variants(model: str, backend: str, int8_calibration: Path | None,
             throughput: bool = False) -> list[tuple[str, dict[str, str]]]:
    """(row name suffix, node parameters) of each node of `model` on `backend` to measure: its defaults; with
    `int8_calibration` (frames to calibrate on) its int8 node where the backend has int8; with `throughput` its
    node in throughput mode where the backend has one (several frames in flight)."""
    rows, manifest = [("", {})], load_manifest(model)
    row = manifest.backend(backend)
    if int8_calibration is not None and manifest.output in COMPARABLE_OUTPUTS and "int8" in precision_choices(row):
        rows.append((" int8", {"precision": "int8", "calibration_data": str(int8_calibration)}))
    if throughput and any(p.name == "performance_mode" for p in row.parameters):
        rows.append((" throughput", {"performance_mode": "throughput"}))
    return rows


def precision_row(model: str, backend: str, parameters: Mapping[str, str]) -> dict[str, Any]:
    """The precision a node with `parameters` runs at and, when not fp32, the accuracy report's line of it
    against fp32 (None where the report does not compare its results, e.g. text)."""
    manifest = load_manifest(model)
    row = manifest.backend(backend)
    values = {**{p.name: p.default for p in node_parameters(manifest, row)}, **parameters}
    precision = values.get("precision")
    if precision in (None, "fp32") or manifest.output not in COMPARABLE_OUTPUTS:
        return {"precision": precision or "-", "accuracy": None}
    with tempfile.TemporaryDirectory() as cache:
        lines = accuracy_report(manifest, row, {**values, "cache_dir": cache}, [precision], ASSETS)
    return {"precision": precision, "accuracy": lines[-1]}


def run_suite(suite: Suite, ws: Path, env: dict[str, str], backends: list[str], yolo_weights: Path,
              frames: list[Any], quick: bool, out: Path, domain: int,
              backend_parameters: Mapping[str, Mapping[str, str]] | None = None,
              int8_calibration: Path | None = None, throughput: bool = False) -> list[dict[str, Any]]:
    """Every runnable backend's node of `suite.model` (and its int8 and throughput-mode nodes as `variants` says)
    and its baseline; `backend_parameters`: node parameters per backend (e.g. the remote one's server_url)."""
    import cv2

    from vision_factory.image_conversion import image_to_bgr

    plan = suite.plan(quick)
    image = out / "bench_frame.png"  # the raw figures use the first frame the nodes get
    cv2.imwrite(str(image), image_to_bgr(frames[0]))
    weights, baseline_args = suite_weights(suite.model, quick, out / "weights", yolo_weights)
    rows = []
    for backend in backends:
        for suffix, variant in variants(suite.model, backend, int8_calibration, throughput):
            parameters = {**weights, **(backend_parameters or {}).get(backend, {}), **variant}
            with tempfile.TemporaryDirectory() as cache:
                raw = raw_inference(suite.model, backend, parameters, env, image, Path(cache) / "raw", plan)
                package = f"{suite.model}_{backend}"
                command = node_command(ws, package, package, {**parameters, "cache_dir": cache},
                                       {"image_raw": "/camera/image_raw"})
                node = measure(package + suffix, command, f"/{package}/{suite.answers}", suite.answer_class(), env,
                               frames, domain, plan, out, True)
            rows.append({"name": package + suffix, "model": suite.model, "backend": backend, "raw": raw, **node,
                         **precision_row(suite.model, backend, parameters)})
    baseline_raw = next((r["raw"] for r in rows if r["backend"] == suite.raw_backend and not suite.reference_raw),
                        None)
    if baseline_raw is None and importlib.util.find_spec(RUNTIMES[suite.raw_backend]) is not None:
        with tempfile.TemporaryDirectory() as cache:
            baseline_raw = raw_inference(suite.model, suite.raw_backend, weights, env, image, Path(cache), plan,
                                         suite.reference_raw)
    if baseline_raw is not None:
        command = [sys.executable, "-m", "vision_factory.tools.bench.baselines", *baseline_args,
                   "--ros-args", "-r", "image_raw:=/camera/image_raw"]
        baseline = measure(suite.baseline, command, suite.baseline_topic, suite.answer_class(), env, frames, domain,
                           plan, out, False)
        rows.append({"name": suite.baseline, "model": suite.model, "backend": "baseline", "raw": baseline_raw,
                     **baseline, "precision": "fp32", "accuracy": None})
    for row in rows:
        raw_p50, e2e_p50 = row["raw"]["p50_ms"], row["e2e"]["p50_ms"]
        row["overhead"] = round(e2e_p50 / raw_p50, 2) if raw_p50 and e2e_p50 else None
        row["max_output_hz"] = max(s["output_hz"] for s in row["sweep"])
    return rows


def run_benchmark(ws: Path, env: dict[str, str], backends_of: dict[str, list[str]], yolo_weights: Path,
                  frames: list[Any], quick: bool, out: Path, domain: int,
                  backend_parameters: Mapping[str, Mapping[str, str]] | None = None,
                  int8_calibration: Path | None = None, throughput: bool = False) -> list[dict[str, Any]]:
    """Every suite in `backends_of` (model -> the backends to measure it on)."""
    rows = []
    for model, backends in backends_of.items():
        rows += run_suite(SUITES[model], ws, env, backends, yolo_weights, frames, quick, out, domain,
                          backend_parameters, int8_calibration, throughput)
    return rows


def against_fp32(row: Mapping[str, Any]) -> str:
    """A row's precision and, for a reduced one, the accuracy report's figures against fp32, in a few words."""
    line = row.get("accuracy")
    if line is None:
        return row.get("precision", "-")
    if "recovered" in line:
        return (f"{row['precision']}: {line['recovered']:.1%} of fp32 detections, person AP50 "
                f"{line['person_ap50']:.3f}")
    if "keypoint_mean_px" in line:
        return f"{row['precision']}: keypoints {line['keypoint_mean_px']} px from fp32 (mean)"
    return f"{row['precision']}: depth {line['depth_mean_relative']:.2%} from fp32 (mean relative)"


def table(rows: list[dict[str, Any]]) -> str:
    header = ("| node | runs on | precision (vs fp32) | raw p50 ms | raw fps | e2e p50 ms | e2e p99 ms | e2e / raw | "
              "max answers/s | at the top input rate: Hz, dropped, latency p50 ms, CPU % | cold start empty / warm s "
              "| peak RSS MiB |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for r in rows:
        top = r["sweep"][-1]
        cold = f"{r['cold_start_empty_s'] if r['cold_start_empty_s'] is not None else '-'} / {r['cold_start_warm_s']}"
        lines.append(f"| {r['name']} | {r['raw']['active']} | {against_fp32(r)} | {r['raw']['p50_ms']} | "
                     f"{r['raw']['fps']} | "
                     f"{r['e2e']['p50_ms']} | {r['e2e']['p99_ms']} | {r['overhead']} | {r['max_output_hz']} | "
                     f"{top['input_hz']:g}, {top['dropped']}, {top['latency_p50_ms']}, {top['cpu_percent']} | "
                     f"{cold} | {r['peak_rss_mb']} |")
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> str:
    """Our nodes against their model's baseline, and remote nodes against the local session, from this run."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        baseline = next((r for r in rows if r["model"] == model and r["backend"] == "baseline"), None)
        if baseline is None:
            continue
        for r in rows:
            if r["model"] == model and r is not baseline:
                # A baseline slower than the sweep's windows answers nothing within them.
                throughput = (f"{r['max_output_hz'] / baseline['max_output_hz']:.2f}x the {baseline['name']}'s "
                              f"throughput" if baseline["max_output_hz"] else
                              f"{r['max_output_hz']} answers/s (the {baseline['name']} answered none within the "
                              f"sweep's windows)")
                theirs, ours = baseline["e2e"]["p50_ms"], r["e2e"]["p50_ms"]
                latency = (f"e2e p50 {ours / theirs:.2f}x its" if theirs and ours else
                           "e2e p50 not comparable (a node answered no frame within the answer timeout)")
                lines.append(f"- {r['name']}: {throughput}, {r['peak_rss_mb'] / baseline['peak_rss_mb']:.0%} of "
                             f"its peak RSS, {latency}")
    runs = [f"- {r['name']}: p50 of each network run of a frame: "
            f"{', '.join(f'{ms} ms' for ms in r['raw']['runs_p50_ms'])}"
            for r in rows if len(r["raw"].get("runs_p50_ms", [])) > 1 and "tokens" not in r["raw"]]
    generation = [f"- {r['name']}: time to first token {r['raw']['first_token_ms']} ms, then "
                  f"{r['raw']['tokens_per_s']} tokens/s ({r['raw']['tokens']} tokens; raw p50 of the encoder and "
                  f"of a decoder step: {', '.join(f'{ms} ms' for ms in r['raw']['runs_p50_ms']) or 'not separable'})"
                  for r in rows if "tokens" in r["raw"]]
    return "\n".join(lines + [network_hop(r, rows) for r in rows if r["backend"] == "remote"] + runs + generation)


def network_hop(remote: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A remote row's round trip against the local onnx session of its model, and what a network would add."""
    local = next((r for r in rows if r["model"] == remote["model"] and r["backend"] == "onnx"), None)
    raw, moved_mb = remote["raw"]["p50_ms"], remote["raw"]["tensor_mb"]
    against = ""
    if local is not None:
        against = (f" against the {local['name']} session's {local['raw']['p50_ms']} ms "
                   f"(+{raw - local['raw']['p50_ms']:.1f} ms: serialising, the protocol, the server)")
    links = ", ".join(f"+{moved_mb * 1e6 / rate * 1e3:.1f} ms on {name}" for name, rate in LINKS.items())
    return (f"- {remote['name']}: round trip p50 {raw} ms on loopback{against}; a frame moves {moved_mb} MB, "
            f"which a network adds to: {links}, plus its round-trip time")


def write_plots(rows: list[dict[str, Any]], out: Path) -> None:
    """Per model: latency distributions, throughput against input rate, peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for model in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == model]
        names = [r["name"] for r in group]
        figure, axes = plt.subplots(figsize=(8, 4))
        axes.boxplot([r["latencies_ms"] for r in group], showfliers=True)
        axes.set_xticks(range(1, len(names) + 1), names, rotation=15)
        axes.set(ylabel="ms", title=f"{model}: frame stamp -> answer received, 640x480, one frame at a time")
        figure.tight_layout()
        figure.savefig(out / f"bench_{model}_latency.png", dpi=100)
        plt.close(figure)

        figure, axes = plt.subplots(figsize=(8, 4))
        for r in group:
            axes.plot([s["input_hz"] for s in r["sweep"]], [s["output_hz"] for s in r["sweep"]], marker="o",
                      label=r["name"])
        rates = [s["input_hz"] for s in group[0]["sweep"]]
        axes.plot(rates, rates, color="grey", linestyle=":", label="every frame answered")
        axes.set(xlabel="input frames/s", ylabel="answers/s",
                 title=f"{model}: throughput (latest-frame policy drops the rest)")
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out / f"bench_{model}_throughput.png", dpi=100)
        plt.close(figure)

        figure, axes = plt.subplots(figsize=(8, 4))
        axes.bar(names, [r["peak_rss_mb"] for r in group])
        axes.set(ylabel="MiB", title=f"{model}: peak resident memory (VmHWM) of the node process")
        axes.tick_params(axis="x", rotation=15)
        figure.tight_layout()
        figure.savefig(out / f"bench_{model}_memory.png", dpi=100)
        plt.close(figure)


def write_results(rows: list[dict[str, Any]], skipped: dict[str, str], quick: bool, out: Path) -> str:
    """bench.json, bench.md and the plots; returns the Markdown."""
    machine = f"{platform.processor() or platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}"
    out.mkdir(parents=True, exist_ok=True)  # the figures first: they cost the run's time, the text none
    (out / "bench.json").write_text(json.dumps({"machine": machine, "quick": quick, "rows": rows,
                                                "skipped": skipped}, indent=2))
    markdown = "\n".join([f"Measured {time.strftime('%Y-%m-%d')} on {machine}.", "", table(rows), "", ratios(rows),
                          *([""] + [f"- {b}: skipped, {why}" for b, why in skipped.items()] if skipped else [])])
    (out / "bench.md").write_text(markdown + "\n")
    write_plots(rows, out)
    return markdown


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vision-factory bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few frames per pair (CI)")
    parser.add_argument("--models", default=",".join(SUITES))
    parser.add_argument("--backends", default="onnx,openvino,cuda,rocm,tensorrt,remote")
    parser.add_argument("--weights", type=Path, default=ASSETS / "models" / "derived" / "yolov8n_from_int8_onnx.pt",
                        help="a YOLO .pt checkpoint (the baseline runs it with ultralytics)")
    parser.add_argument("--bag", type=Path, default=ASSETS / "rosbags" / "mmpose_street_demo_5f")
    parser.add_argument("--out", type=Path, default=source_checkout() / "out" / "bench")
    parser.add_argument("--workspace", type=Path, default=source_checkout() / ".cache" / "bench_ws")
    parser.add_argument("--domain", type=int, default=77, help="ROS_DOMAIN_ID of the measured processes")
    parser.add_argument("--server-url", default="", help="the remote backend's server (grpc://HOST:PORT), serving "
                                                          "`vision-factory export --repository` of the same weights")
    parser.add_argument("--int8", action="store_true", help="also each backend's int8 node where it has one, "
                                                            "calibrated on --bag")
    parser.add_argument("--throughput", action="store_true", help="also each backend's node in throughput mode "
                                                                  "where it has one (openvino's performance_mode)")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in SUITES]
    if unknown:
        print(f"bench: no benchmark for {', '.join(unknown)} (known: {', '.join(SUITES)})", file=sys.stderr)
        return 2
    for path in (args.weights, args.bag):
        if not path.exists():
            print(f"bench: {path} does not exist (pass --weights / --bag)", file=sys.stderr)
            return 2
    backends, skipped = runnable_backends([b for b in args.backends.split(",") if b], args.server_url)
    print(f"[bench] building {', '.join(models)} nodes for {', '.join(backends)} in {args.workspace}",
          file=sys.stderr)
    from vision_factory.manifest import load_manifest

    backends_of = {m: [b for b in backends if b in load_manifest(m).backends] for m in models}
    create_workspace(args.workspace, [(m, b) for m, supported in backends_of.items() for b in supported])
    colcon_build(args.workspace)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run_benchmark(args.workspace, workspace_env(args.workspace), backends_of, args.weights.resolve(),
                         bench_frames(args.bag), args.quick, args.out, args.domain,
                         {"remote": {"server_url": args.server_url}}, args.bag if args.int8 else None,
                         args.throughput)
    print(write_results(rows, skipped, args.quick, args.out))
    print(f"[bench] wrote bench.json, bench.md and plots into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
