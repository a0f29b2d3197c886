"""The node's diagnostic_msgs status on /diagnostics: what runs, how well, and the last error.

Level rules (also in the README):
  ERROR  no model session could be built (unmanaged, the node is about to exit; managed, configure
         failed and the node waits unconfigured)
  WARN   the last rebuild failed and the previous session still serves; or, once running, no input
         for more than diagnostics_no_input_s (with the likely cause when a publisher is matched);
         frames lost in transport within the last window; at least REJECTED_SHARE of the frames of
         the last window rejected (with the latest reason); or p99 latency (received -> published)
         above diagnostics_latency_ms; or the session reports a problem (the remote backend: requests
         to the inference server failed within the last 10 s)
  OK     otherwise
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from vision_factory.frame_stats import WINDOW_S
from vision_factory.live_model import ERROR, RUNNING, LiveModel

TOPIC = "/diagnostics"
PERIOD_S = 1.0
REJECTED_SHARE = 0.1
# Why a matched publisher's frames do not arrive, measured: Fast DDS drops best-effort samples larger
# than the publisher's socket buffers (4K and 8K bgr8) unless the publisher's process enlarges them.
SILENT_PUBLISHER_HINT = ("frames too large for the transport are lost on the way: on a best-effort camera "
                         "set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA?sockets_size=64MB in the camera's "
                         "environment, or publish reliable")


class PeriodicPublisher:
    """Calls `publish()` every PERIOD_S on a daemon thread of its own until stop().

    Not an executor timer: the node spins a single-threaded executor (rclpy's multi-threaded one delayed
    frames by up to 2 s next to OpenVINO's thread pool, measured), and diagnostics must keep coming
    while a managed node's configure blocks that executor on a minutes-long export."""

    def __init__(self, publish: Callable[[], None], logger: Any, name: str = "diagnostics"):
        self._publish, self._logger = publish, logger
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for a publication in progress (so the publisher can be destroyed after it)."""
        self._stopping.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(PERIOD_S):
            try:
                self._publish()
            except Exception as e:  # a report that failed once must not end reporting
                self._logger.error(f"could not publish diagnostics: {type(e).__name__}: {e}",
                                   throttle_duration_sec=60.0)


def inference_status(node_name: str, backend: str, state: str, live: LiveModel, stats: Mapping[str, Any],
                     dropped: int, no_input_s: float, latency_ms: float, part: str = "inference") -> DiagnosticStatus:
    """The node's status "<node>: inference" (or, with `part`, one camera's, "<node>: cam0"): its `state` (the
    live model's, or a managed node's lifecycle state) and active session, rates, latency and the rules
    above, over `stats` (all cameras', or that camera's)."""
    loaded = live.current
    warnings = []
    session_warning, session_values = session_report(loaded)
    if session_warning:
        warnings.append(session_warning)
    if live.last_error and state != ERROR:
        warnings.append("last rebuild failed")
    if state == RUNNING and stats["seconds_since_input"] > no_input_s:
        silence = f"no input for {stats['seconds_since_input']:.0f} s"
        if stats.get("matched_publishers"):
            silence += f" from {stats['matched_publishers']} matched publisher(s): {SILENT_PUBLISHER_HINT}"
        warnings.append(silence)
    if state == RUNNING and stats.get("prompt_publishers") == 0 and stats["received_recent"]:
        warnings.append("frames arrive but no publisher of prompts is connected: frames wait for prompts that "
                        "never come (check prompts_topic)")
    if stats.get("lost_recent"):
        warnings.append(f"{stats['lost_recent']} frames lost in transport in the last {WINDOW_S:.0f} s: "
                        f"{SILENT_PUBLISHER_HINT}")
    if stats["rejected_recent"] and stats["rejected_recent"] >= REJECTED_SHARE * stats["received_recent"]:
        warnings.append(f"{stats['rejected_recent']} of {stats['received_recent']} frames in the last "
                        f"{WINDOW_S:.0f} s rejected: {stats['last_rejection']}")
    if stats["latency_p99_ms"] is not None and stats["latency_p99_ms"] > latency_ms:
        warnings.append(f"p99 latency {stats['latency_p99_ms']:.0f} ms over {latency_ms:.0f} ms")
    message = state
    if live.building and loaded is not None:
        message += f", rebuilding the session ({live.building})"
    if state == ERROR:
        level = DiagnosticStatus.ERROR
    elif warnings:
        level, message = DiagnosticStatus.WARN, f"{message}: {'; '.join(warnings)}"
    else:
        level = DiagnosticStatus.OK
    values = {
        "state": state,
        "backend": backend,
        "active": loaded.session.active if loaded else "",
        "model": loaded.manifest.name if loaded else "",
        **weights_values(loaded),
        **session_values,
        "dropped_frames": str(dropped),
        **{key: "" if value is None else str(value) for key, value in stats.items()},
        "last_error": live.last_error,
    }
    return DiagnosticStatus(level=level, name=f"{node_name}: {part}", message=message,
                            hardware_id=backend, values=[KeyValue(key=k, value=v) for k, v in values.items()])


def session_report(loaded: Any) -> tuple[str, dict[str, str]]:
    """What the serving session reports of itself (backends.session.ReportingSession), if it does."""
    report = getattr(loaded.session, "report", None) if loaded is not None else None
    return report() if report is not None else ("", {})


def weights_values(loaded: Any) -> dict[str, str]:
    """Which file each set of weights runs from ("weights" for the model parameter's, "<parameter>
    weights" for others) and whether this launch exported any of them."""
    if loaded is None:
        return {"weights": "", "exported_this_launch": ""}
    values = {"weights" if role == "model" else f"{role} weights": str(artifact.path)
              for role, artifact in loaded.artifacts.items()}
    values["exported_this_launch"] = str(any(artifact.exported for artifact in loaded.artifacts.values()))
    return values


def diagnostic_array(statuses: list[DiagnosticStatus], header: Header) -> DiagnosticArray:
    return DiagnosticArray(header=header, status=statuses)
