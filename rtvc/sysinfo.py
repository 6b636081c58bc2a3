"""One line that names the machine, for every figure rtvc prints or writes; and how much CPU
time the hypervisor took from it (steal), which explains glitches no program on it could help."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["machine_description", "cpu_times", "steal_share"]


def machine_description(*, load: bool = True) -> str:
    """CPU model, logical cores, OS, Python and (``load``) the current 1-minute load average."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    if load and hasattr(os, "getloadavg"):
        text += f", load average {os.getloadavg()[0]:.1f}"
    return text


def cpu_times(stat: str | None = None) -> tuple[int, int] | None:
    """``(total, steal)`` CPU time over all CPUs since boot, in clock ticks, from the ``cpu``
    line of ``/proc/stat`` (``stat``: its text, for tests); ``None`` where there is none."""
    try:
        text = stat if stat is not None else Path("/proc/stat").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == "cpu":
            v = [int(x) for x in f[1:]]
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
            return sum(v[:8]), (v[7] if len(v) > 7 else 0)
    return None


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share (0..1) of the CPU time between two :func:`cpu_times` that the hypervisor gave to
    other guests: time in which this machine's runnable threads, audio ones included, did not
    run. ``None`` if either is missing or no time passed."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])
