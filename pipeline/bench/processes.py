"""Child processes of the bench: ``computewatch worker`` and one-off readers of a chDB path.

Every child is started by this module and stopped by its pid (SIGTERM, then SIGKILL after a
grace period). The embedded engine lets one process hold a data path, so each worker gets its
own path and the bench reads it in a fresh child after the worker has stopped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

WORKER_COMMAND = (sys.executable, "-m", "pipeline.cli", "worker")
"""``computewatch worker``, run by the bench's own interpreter."""
STOP_GRACE_S = 90.0


class ChildFailed(RuntimeError):
    """A worker or reader process exited early or with an error; the message has its log tail."""


@dataclass(frozen=True, slots=True)
class WorkerEnv:
    """The ``COMPUTEWATCH_*`` variables that point one worker at its topics, group and path."""

    bootstrap: str
    events_topic: str
    alerts_topic: str
    dlq_topic: str
    group: str
    clickhouse_url: str
    partitions: int = 4
    session_timeout_s: float | None = None

    def variables(self) -> dict[str, str]:
        timeout = self.session_timeout_s
        return ({"COMPUTEWATCH_KAFKA_SESSION_TIMEOUT_S": str(timeout)} if timeout else {}) | {
            "COMPUTEWATCH_KAFKA_BOOTSTRAP": self.bootstrap,
            "COMPUTEWATCH_KAFKA_EVENTS_TOPIC": self.events_topic,
            "COMPUTEWATCH_KAFKA_ALERTS_TOPIC": self.alerts_topic,
            "COMPUTEWATCH_KAFKA_DLQ_TOPIC": self.dlq_topic,
            "COMPUTEWATCH_KAFKA_CONSUMER_GROUP": self.group,
            "COMPUTEWATCH_KAFKA_PARTITIONS": str(self.partitions),
            "COMPUTEWATCH_CLICKHOUSE_URL": self.clickhouse_url,
        }


@dataclass
class Child:
    """A running child process with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, chars: int = 2_000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise :class:`ChildFailed` if the process has exited."""
        if self.process.poll() is not None:
            raise ChildFailed(
                f"{self.name} (pid {self.pid}) exited with {self.process.returncode}:\n"
                + self.tail()
            )

    def peak_rss_bytes(self) -> int:
        """The child's peak resident set size so far (Linux ``VmHWM``; 0 if unknown)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def signal(self, signum: signal.Signals) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    def stop(self, grace: float = STOP_GRACE_S) -> int:
        """SIGTERM (and SIGCONT, in case it was paused), wait, SIGKILL if still running."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.pid)
                self.process.kill()
                self.process.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode


def start_child(name: str, argv: Sequence[str], env: dict[str, str], workdir: Path) -> Child:
    """Start ``argv`` in ``workdir`` with ``env`` added to this process's environment."""
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        list(argv),
        env={**os.environ, **env},
        cwd=workdir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log.info("started %s (pid %d), log %s", name, process.pid, log_path)
    return Child(name, process, log_path, log_file)


def start_worker(name: str, env: WorkerEnv, workdir: Path, *, argv: Sequence[str] = ()) -> Child:
    """``computewatch worker`` (or ``argv``, e.g. the latency probe) with ``env``'s settings."""
    return start_child(name, argv or WORKER_COMMAND, env.variables(), workdir)


def run_json(module: str, args: Sequence[str], workdir: Path, timeout: float = 600.0) -> Any:
    """Run ``python -m module args`` to completion and parse the JSON it prints last."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=workdir,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise ChildFailed(
            f"{module} exited with {result.returncode}:\n"
            + result.stderr.decode(errors="replace")[-2_000:]
        )
    lines = result.stdout.decode().strip().splitlines()
    if not lines:
        raise ChildFailed(f"{module} printed nothing")
    return json.loads(lines[-1])
