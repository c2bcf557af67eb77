r"""The machine (and code revision) a bench ran on, for the report.

>>> m = Machine(cores=2, cpu="AMD EPYC", ram_bytes=24 * 2**30, python="3.11.7",
...             load=(1.5, 1.6, 1.7), revision="abc1234")
>>> print(m.line().replace(", ", ",\n"))
2 cores (AMD EPYC),
24.0 GiB RAM,
Python 3.11.7,
load average 1.50 / 1.60 / 1.70 at start,
code abc1234
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pipeline


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    cpu: str
    ram_bytes: int
    python: str
    load: tuple[float, float, float]
    revision: str

    def line(self) -> str:
        load = " / ".join(f"{x:.2f}" for x in self.load)
        return (
            f"{self.cores} cores ({self.cpu}), {self.ram_bytes / 2**30:.1f} GiB RAM, "
            f"Python {self.python}, load average {load} at start, code {self.revision}"
        )


def _proc_field(path: str, name: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return ""


def _revision() -> str:
    """Short commit of the source tree, marked when the tree has uncommitted changes."""
    root = Path(next(iter(pipeline.__path__))).parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} + uncommitted changes" if dirty else commit


def describe_machine() -> Machine:
    ram_kib = _proc_field("/proc/meminfo", "MemTotal").split()
    return Machine(
        cores=len(os.sched_getaffinity(0)),
        cpu=_proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        ram_bytes=int(ram_kib[0]) * 1024 if ram_kib else 0,
        python=platform.python_version(),
        load=os.getloadavg(),
        revision=_revision(),
    )
