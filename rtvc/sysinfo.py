"""One line that names the machine, for every figure rtvc prints or writes."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["machine_description"]


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
