"""The CPUs this process may run on (its affinity: taskset, cgroups), for sizing thread pools."""
from __future__ import annotations

import os
from pathlib import Path


def usable_cpus() -> list[int]:
    """The ids of the CPUs this process may run on (every CPU where affinity cannot be read)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """The physical cores among the usable CPUs, as ONNX Runtime counts its default thread number; the CPU count
    where the topology cannot be read."""
    cpus = usable_cpus()
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            return len(cpus)
    return len(cores)
