"""Raw inference: the backend sessions alone, built as a node builds them, on preprocessed tensors of one
image.

    python -m vision_factory.tools.bench.raw_session --model yolo --backend onnx --image I --iterations N
        --cache-dir D -p model=W [-p NAME=VALUE ...]

Prints one JSON object (active provider/device, p50/p90/p99 ms, frames per second, the p50 of each network
run of a frame, MB of tensors a frame moves in and out of the sessions: what a remote backend sends over the
network). One iteration runs every network a frame needs: YOLO, depth and Grounding DINO (with the prompt
given) one; RTMPose the detector, then the pose network on the people found (one run, or one each for a
network of a fixed batch); SAM its image encoder, then
its decoder on the boxes given; Florence-2 its encoder, then its decoder once per token of the answer (with time
to the first token and tokens per second; --reference: transformers' own generate timed the same way). The
benchmark runs it in a fresh process per backend so no other runtime's threads or memory share the measurement.
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


Feed = list[tuple[Any, dict[str, np.ndarray]]]  # the (session, inputs by name) runs one frame makes


def _detections(model: Any, image: np.ndarray) -> Feed:
    return [(model.session, {model.session.input_name: model.preprocess(image)[0]})]


def _poses(model: Any, image: np.ndarray) -> Feed:
    """The detector once, then the pose network on the people the node would estimate: one run for all of
    them (one each for a network of a fixed batch)."""
    blob, _ = model.detector.preprocess(image)
    boxes = model(image).boxes_xyxy  # the people found at the node's default thresholds
    estimator = model.estimator
    crops = estimator.preprocess(image, boxes)[0] if len(boxes) else []
    batches = [crops] if estimator.batched and len(boxes) else [crops[i:i + 1] for i in range(len(crops))]
    return [(model.detector.session, {model.detector.session.input_name: blob})] + [
        (estimator.session, {estimator.session.input_name: batch}) for batch in batches]


def _depth(model: Any, image: np.ndarray) -> Feed:
    return [(model.session, {model.session.input_name: model.preprocess(image)})]


def _prompted(model: Any, image: np.ndarray, parameters: dict[str, Any]) -> Feed:
    """An open-vocabulary detector: the frame with the prompt given (-p prompt=...), else the node's default."""
    return [(model.session, model.network_inputs(image, **{k: v for k, v in parameters.items() if k == "prompt"}))]


def _segmented(model: Any, image: np.ndarray, parameters: dict[str, Any]) -> Feed:
    """A promptable segmenter: the image encoder, then the decoder on the boxes given (-p boxes=...)."""
    from vision_factory.masks import parse_boxes
    from vision_factory.models.sam import PIXELS

    coords, labels = model.architecture.box_tokens(parse_boxes(str(parameters.get("boxes", ""))))
    decoder_inputs = model.decoder_inputs(model.features(image), coords, labels, image.shape[:2])
    return [(model.encoder, {PIXELS: model.processing.preprocess(image)}), (model.decoder, decoder_inputs)]


def _generated(model: Any, image: np.ndarray, parameters: dict[str, Any]) -> Feed:
    """A text generator: its encoder, then its decoder once per token of its answer to the task given (-p task=,
    -p max_new_tokens=), each step with the cache that token had."""
    from vision_factory.models.florence2 import PIXELS, TOKENS

    task, max_new_tokens = str(parameters.get("task", "caption")), int(parameters.get("max_new_tokens", 256))
    text_input = str(parameters.get("text_input", ""))
    steps: list[dict[str, np.ndarray]] = []
    decoder = model.decoder

    class Recording:
        def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
            steps.append(dict(inputs))
            return decoder.run(inputs)

    model.decoder = Recording()
    try:
        model.generate(image, task, text_input, max_new_tokens)
    finally:
        model.decoder = decoder
    encoder_inputs = {PIXELS: model.processing.preprocess(image, model.processing.size_hw),
                      TOKENS: model.prompt_ids(task, text_input)}
    return [(model.encoder, encoder_inputs)] + [(decoder, inputs) for inputs in steps]


# Output kind -> the session runs one frame makes (a model whose network takes more than the frame: by name).
FEEDS: dict[str, Callable[..., Feed]] = {"detections": _detections, "poses": _poses, "depth": _depth}
MODEL_FEEDS: dict[str, Callable[..., Feed]] = {"grounding_dino": _prompted, "sam": _segmented,
                                               "florence2": _generated}


def generation_figures(encoder_ms: float, first_step_ms: float, later_steps_ms: list[float]) -> dict[str, Any]:
    """Time to the first token (the encoder and the first decoder step), tokens per second after it, tokens."""
    return {"tokens": 1 + len(later_steps_ms), "first_token_ms": round(encoder_ms + first_step_ms, 2),
            "tokens_per_s": round(len(later_steps_ms) / (sum(later_steps_ms) / 1000), 1) if later_steps_ms else None}


def measure(model: str, backend: str, image_path: Path, iterations: int, cache_dir: Path,
            overrides: dict[str, Any]) -> dict[str, Any]:
    runner = load_default_model(model, backend, overrides.pop("model"), cache_dir, **overrides)
    image = cv2.imread(str(image_path))
    if model in MODEL_FEEDS:
        feeds = MODEL_FEEDS[model](runner.model, image, overrides)
    else:
        feeds = FEEDS[runner.manifest.output](runner.model, image)

    runs: list[list[float]] = [[] for _ in feeds]  # each network run's durations

    def run_once() -> int:
        """One frame; the bytes of the tensors it moved in and out of the sessions."""
        moved = 0
        for index, (session, inputs) in enumerate(feeds):
            started = time.perf_counter()
            outputs = session.run(inputs)
            runs[index].append(time.perf_counter() - started)
            moved += sum(tensor.nbytes for tensor in inputs.values()) + sum(output.nbytes for output in outputs)
        return moved

    for _ in range(max(3, iterations // 10)):
        run_once()
    runs = [[] for _ in feeds]
    durations = []
    for _ in range(iterations):
        started = time.perf_counter()
        run_once()
        durations.append(time.perf_counter() - started)
    runs_p50_ms = [percentiles_ms(times)["p50_ms"] for times in runs]
    figures = {"active": runner.session.active, **percentiles_ms(durations),
               "fps": round(len(durations) / sum(durations), 1), "runs_p50_ms": runs_p50_ms,
               "tensor_mb": round(run_once() / 1e6, 2)}
    if runner.manifest.output == "text":  # the encoder, then one decoder run per token
        figures.update(generation_figures(runs_p50_ms[0], runs_p50_ms[1], runs_p50_ms[2:]),
                       runs_p50_ms=[runs_p50_ms[0], float(np.median(runs_p50_ms[1:]))])
    return figures


def reference_generation(weights: str, image_path: Path, iterations: int, task: str = "caption",
                         max_new_tokens: int = 256) -> dict[str, Any]:
    """transformers' own generate(num_beams=1) on the processor's tensors of the image, on the CPU: the
    whole answer's time, the time to its first token (generate for one token) and tokens per second after it."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vision_factory.models.florence2_tasks import TASKS

    processor = AutoProcessor.from_pretrained(weights)
    model = AutoModelForImageTextToText.from_pretrained(weights).eval()
    inputs = processor(text=TASKS[task].token, images=cv2.imread(str(image_path))[:, :, ::-1].copy(),
                       return_tensors="pt")

    def generate(tokens: int) -> tuple[float, int]:
        started = time.perf_counter()
        with torch.no_grad():
            ids = model.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=tokens)
        return time.perf_counter() - started, ids.shape[1] - 1

    for _ in range(max(2, iterations // 10)):
        generate(max_new_tokens)
    firsts, wholes, tokens = [], [], 0
    for _ in range(iterations):
        firsts.append(generate(1)[0])
        seconds, tokens = generate(max_new_tokens)
        wholes.append(seconds)
    first, whole = percentiles_ms(firsts)["p50_ms"], percentiles_ms(wholes)
    return {"active": f"transformers generate (PyTorch {torch.__version__}, cpu)", **whole,
            "fps": round(len(wholes) / sum(wholes), 1), "runs_p50_ms": [], "tensor_mb": 0.0, "tokens": tokens,
            "first_token_ms": first,
            "tokens_per_s": round((tokens - 1) / ((whole["p50_ms"] - first) / 1000), 1) if tokens > 1 else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raw_session", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolo")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a node parameter, e.g. -p model=W (values parsed as YAML)")
    parser.add_argument("--reference", action="store_true",
                        help="florence2: time transformers' own generate instead of the backend's sessions")
    args = parser.parse_args(argv)
    overrides = parse_assignments(args.param, plan_package(args.model, args.backend).defaults())
    if args.reference:
        figures = reference_generation(str(overrides["model"]), args.image, args.iterations, str(overrides["task"]),
                                       int(overrides["max_new_tokens"]))
    else:
        figures = measure(args.model, args.backend, args.image, args.iterations, args.cache_dir, overrides)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
