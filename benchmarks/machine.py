"""The machine a benchmark ran on, as its results name it: the CPU model and the core count."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one, else what ``platform`` says) and the core count."""
    cpuinfo = Path("/proc/cpuinfo")
    names = (
        [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        if cpuinfo.is_file()
        else []
    )
    return f"{names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} cores"
