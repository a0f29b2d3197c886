"""The soak script in small: every frame through a running node gets exactly one answer and resident
memory stays flat after warm-up. `scripts/soak` runs the full 5,000 frames."""
from __future__ import annotations

from node_harness import next_domain
from vision_factory.tools.bench.soak import MAX_GROWTH, soak, table, write_outputs

FRAMES = 300


def test_a_short_soak_answers_every_frame_once_with_flat_memory(workspace, frames, tmp_path) -> None:
    ws, env = workspace
    log = tmp_path / "node.log"
    result = soak(ws, env, "onnx", frames, FRAMES, tmp_path / "cache", next_domain(), log=log)
    print(table(result))
    assert (result.answered, result.unanswered, result.duplicates) == (FRAMES, 0, 0), log.read_text()[-3000:]
    assert result.growth < MAX_GROWTH, result.rss_mb
    assert result.exit_code == 0 and result.passed
    write_outputs(result, tmp_path)
    assert (tmp_path / "soak.png").stat().st_size > 0 and len(result.rss_mb) >= 50
