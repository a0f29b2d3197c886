"""`vision-factory bench --quick`: every code path of the benchmark runs, on every node the test
workspace has and on the baseline, and produces complete figures, a table and plots. (No timing is
asserted: the figures are for people to read.)"""
from __future__ import annotations

import json

import pytest

from conftest import BAG, CHECKPOINT, asset
from node_harness import next_domain

pytest.importorskip("torch", reason="the baseline runs ultralytics on PyTorch")
pytest.importorskip("matplotlib", reason="the benchmark writes plots")


def test_quick_benchmark_measures_every_node_and_the_baseline(workspace, tmp_path) -> None:
    from vision_factory.bench.compare import BASELINE, Plan, bench_frames, run_benchmark, write_results

    ws, env = workspace
    frames = bench_frames(asset(BAG))
    assert (frames[0].width, frames[0].height) == (640, 480)
    plan = Plan.make(quick=True)
    rows = run_benchmark(ws, env, ["onnx", "openvino", "cuda"], asset(CHECKPOINT), frames, plan, tmp_path,
                         next_domain())
    assert [r["name"] for r in rows] == ["yolo_onnx", "yolo_openvino", "yolo_cuda", BASELINE]
    for row in rows:
        assert len(row["latencies_ms"]) == plan.lockstep_frames, row["name"]
        assert all(row["e2e"][k] > 0 and row["raw"][k] > 0 for k in ("p50_ms", "p90_ms", "p99_ms"))
        assert row["overhead"] > 0 and row["peak_rss_mb"] > 0 and row["cold_start_warm_s"] > 0
        assert [s["input_hz"] for s in row["sweep"]] == list(plan.rates_hz)
        # One second per rate in --quick: a slow answer may miss it, so only the sweep as a whole must answer.
        assert all(s["sent"] >= s["answered"] for s in row["sweep"]) and sum(s["answered"] for s in row["sweep"])
    assert all(r["cold_start_empty_s"] > 0 for r in rows[:3]) and rows[3]["cold_start_empty_s"] is None
    markdown = write_results(rows, {"tensorrt": "tensorrt is not installed"}, plan, tmp_path)
    assert "| yolo_onnx |" in markdown and "the baseline's throughput" in markdown and "tensorrt: skipped" in markdown
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["name"] == "yolo_onnx"
    for plot in ("bench_latency.png", "bench_throughput.png", "bench_memory.png"):
        assert (tmp_path / plot).stat().st_size > 1000
