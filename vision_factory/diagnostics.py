"""The node's diagnostic_msgs status on /diagnostics: what runs, in what state, and the last error."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from vision_factory.live_runner import ERROR, LiveRunner

TOPIC = "/diagnostics"
PERIOD_S = 1.0


def inference_status(node_name: str, backend: str, live: LiveRunner) -> DiagnosticStatus:
    """OK while running (or starting / exporting / loading); WARN when the last rebuild failed and the
    previous session still serves; ERROR when no session could be built."""
    runner = live.current
    message = live.state
    if live.building and runner is not None:
        message += f", rebuilding the session ({live.building})"
    if live.state == ERROR:
        level = DiagnosticStatus.ERROR
    elif live.last_error:
        level, message = DiagnosticStatus.WARN, message + ", last rebuild failed"
    else:
        level = DiagnosticStatus.OK
    values = {
        "state": live.state,
        "backend": backend,
        "active": runner.session.active if runner else "",
        "model": runner.manifest.name if runner else "",
        "weights": str(runner.artifact.path) if runner else "",
        "exported_this_launch": str(runner.artifact.exported) if runner else "",
        "last_error": live.last_error,
    }
    return DiagnosticStatus(level=level, name=f"{node_name}: inference", message=message,
                            hardware_id=backend, values=[KeyValue(key=k, value=v) for k, v in values.items()])


def diagnostic_array(status: DiagnosticStatus, header: Header) -> DiagnosticArray:
    return DiagnosticArray(header=header, status=[status])


