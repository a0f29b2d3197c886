"""`vision-factory bench --quick`: every code path of the benchmark runs, on every node the test
workspace has and on each model's baseline, and produces complete figures, a table and plots. (No timing
is asserted: the figures are for people to read.)"""
from __future__ import annotations

import json

import pytest

from conftest import ASSETS, BAG, CHECKPOINT, asset
from node_harness import next_domain

pytest.importorskip("torch", reason="the yolo and depth baselines run on PyTorch")
pytest.importorskip("transformers", reason="the depth baseline is transformers' pipeline")
pytest.importorskip("rtmlib", reason="the pose baseline is rtmlib's Body")
pytest.importorskip("matplotlib", reason="the benchmark writes plots")

# The packages the test workspace builds, per model.
BACKENDS = {"yolo": ["onnx", "openvino", "cuda"], "rtmpose": ["onnx", "openvino"], "depth_anything": ["onnx", "cuda"],
            "grounding_dino": ["onnx"], "sam": ["onnx"], "florence2": ["onnx"]}
INT8 = {"yolo": ("onnx", "openvino")}  # the nodes also measured at int8 (the backends that have it)


# Fourteen processes, each started twice (warm and empty cache): ~5 min here, over 7 when the CPUs are shared.
@pytest.mark.timeout(1500)
def test_quick_benchmark_measures_every_node_and_every_baseline(workspace, tmp_path) -> None:
    from vision_factory.tools.bench.compare import QUICK, SUITES, bench_frames, run_suite, write_results

    asset(ASSETS / "models" / "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx")
    ws, env = workspace
    frames = bench_frames(asset(BAG))
    assert (frames[0].width, frames[0].height) == (640, 480)
    rows = []
    for model, backends in BACKENDS.items():
        # YOLO's int8 nodes too (onnx and openvino have int8), calibrated on the bag.
        rows += run_suite(SUITES[model], ws, env, backends, asset(CHECKPOINT), frames, True, tmp_path, next_domain(),
                          int8_calibration=BAG if model == "yolo" else None)
    expected = [name for model, backends in BACKENDS.items() for backend in backends
                for name in [f"{model}_{backend}"] + ([f"{model}_{backend} int8"] if backend in INT8.get(model, ())
                                                      else [])]
    baselines = [SUITES[model].baseline for model in BACKENDS]
    assert [r["name"] for r in rows if r["backend"] != "baseline"] == expected
    assert [r["name"] for r in rows if r["backend"] == "baseline"] == baselines
    for row in rows:
        assert len(row["latencies_ms"]) == QUICK.lockstep_frames, row["name"]
        assert all(row["e2e"][k] > 0 and row["raw"][k] > 0 for k in ("p50_ms", "p90_ms", "p99_ms"))
        assert row["overhead"] > 0 and row["peak_rss_mb"] > 0 and row["cold_start_warm_s"] > 0
        assert [s["input_hz"] for s in row["sweep"]] == list(QUICK.rates_hz)
        # The last frame of each rate is waited for, so every rate has an answer however slow the machine.
        assert all(s["sent"] >= s["answered"] >= 1 for s in row["sweep"]), row["sweep"]
        assert (row["cold_start_empty_s"] is None) == (row["backend"] == "baseline"), row["name"]
    # The precision each runs and, off fp32, the accuracy report's figures: openvino's default (auto) and int8.
    precisions = {r["name"]: (r["precision"], r["accuracy"]) for r in rows if r["model"] == "yolo"}
    assert precisions["yolo_onnx"] == ("fp32", None) and precisions["yolo_cuda"] == ("fp32", None)
    for name, precision in (("yolo_openvino", "auto"), ("yolo_onnx int8", "int8"), ("yolo_openvino int8", "int8")):
        assert precisions[name][0] == precision and precisions[name][1]["recovered"] >= 0.9, precisions[name]
    markdown = write_results(rows, {"tensorrt": "tensorrt is not installed"}, True, tmp_path)
    assert "| yolo_openvino int8 | CPU (int8 + fp32) | int8: 9" in markdown
    assert "| yolo_onnx |" in markdown and "| depth_anything_cuda |" in markdown and "tensorrt: skipped" in markdown
    assert "the rtmlib Body node's throughput" in markdown and "the transformers pipeline node's" in markdown
    assert "| grounding_dino_onnx |" in markdown and "the transformers zero-shot pipeline node's" in markdown
    assert "| sam_onnx |" in markdown and "the transformers SamModel node's" in markdown
    assert "- sam_onnx: p50 of each network run of a frame: " in markdown  # the encoder, then the decoder
    assert "| florence2_onnx |" in markdown and "the transformers generate node's" in markdown
    generation = {r["name"]: r["raw"] for r in rows if r["model"] == "florence2"}
    assert all(raw["first_token_ms"] > 0 and raw["tokens"] >= 1 for raw in generation.values()), generation
    assert "- florence2_onnx: time to first token " in markdown
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["name"] == "yolo_onnx"
    for model in BACKENDS:
        for plot in ("latency", "throughput", "memory"):
            assert (tmp_path / f"bench_{model}_{plot}.png").stat().st_size > 1000


def test_the_nodes_each_backend_is_measured_as() -> None:
    from vision_factory.tools.bench.compare import variants

    assert variants("yolo", "onnx", None) == [("", {})]
    assert variants("yolo", "onnx", BAG, throughput=True) == [
        ("", {}), (" int8", {"precision": "int8", "calibration_data": str(BAG)})]  # onnx has no throughput mode
    assert variants("yolo", "openvino", None, throughput=True) == [
        ("", {}), (" throughput", {"performance_mode": "throughput"})]
