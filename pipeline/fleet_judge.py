"""The fleet stage's judging in a process of its own, beside the partitions, as production runs it.

In production stage 2 is a worker of its own: it takes the minutes stage 1 sends and judges
them while stage 1 reads on. A replay in one process did both one after the other, and judging
(rolling each due point up to every entity and running every detector on it) was a third of
its time. :class:`FleetJudge` gives that work to a child process (``python -m
pipeline.fleet_judge``): the parts of each step go to it (MessagePack, as on
``compute.minutes``), and its alerts come back as it makes them. It runs a
:class:`~pipeline.fleet.FleetStage` on exactly the calls the in-process stage would get (parts,
clocks and spend of every step, in order), so its alerts are the same, in the same order; only
the step that returns them moves (a later one, at the latest :meth:`FleetJudge.finish`).

What must not wait stays with the caller: the context norms every partition scores its next
requests against are pooled in-process (:meth:`~pipeline.fleet.FleetStage.merged_norms`).

The child is a plain interpreter running this module, not a :mod:`multiprocessing` one: it
imports nothing of the caller's script (a script without a ``__main__`` guard must not start
itself again), and forks no process that may hold threads. Frames on its stdin and stdout are
a 4-byte length and a body.

>>> from pipeline.config import Settings
>>> from pipeline.fleet import MinutePart
>>> judge = FleetJudge(Settings(), partitions=1)
>>> judge.add([MinutePart(partition=0, minute=0, end_s=60.0, groups=[])], {0: 70.0})
>>> judge.send()
[]
>>> judge.finish()
[]
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final, cast

import msgspec

import pipeline
from pipeline.budgets import SpendTick
from pipeline.collector import long_run_collector
from pipeline.config import Settings
from pipeline.detectors import default_detectors
from pipeline.fleet import FleetStage, MinutePart
from pipeline.records import Alert

IN_FLIGHT: Final = 8  # frames handed over and not yet written to the judge (a few MB each)
WAIT_S: Final = 1.0  # how often a caller waiting on the judge looks whether it still runs
_LENGTH: Final = 4  # bytes of a frame's length


class JudgeStep(msgspec.Struct, array_like=True):
    """One call of :meth:`FleetStage.add <pipeline.fleet.FleetStage.add>`, norms aside."""

    parts: list[MinutePart]
    clocks: dict[int, float]
    spend: list[SpendTick]


class JudgeFailed(RuntimeError):
    """The judging process failed or ended early; its message says why."""


class FleetJudge:
    """A :class:`~pipeline.fleet.FleetStage` judging in a child process (module docstring)."""

    def __init__(self, settings: Settings, partitions: int) -> None:
        here = str(Path(pipeline.__file__).resolve().parent.parent)  # this very package
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        self._child = subprocess.Popen(
            [sys.executable, "-m", "pipeline.fleet_judge"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        _write_frame(self._child.stdin, pickle.dumps((settings, partitions)))
        self._encoder = msgspec.msgpack.Encoder()
        self._unsent: list[JudgeStep] = []
        # a thread writes the steps and one reads the alerts, so neither side waits on the
        # other's pipe: the caller goes on while the judge takes in the step before
        self._steps: queue.Queue[bytes | None] = queue.Queue(maxsize=IN_FLIGHT)
        self._replies: queue.Queue[tuple[str, object]] = queue.Queue()
        self._writer = threading.Thread(target=self._write, args=(self._child.stdin,), daemon=True)
        self._reader = threading.Thread(target=self._read, args=(self._child.stdout,), daemon=True)
        self._writer.start()
        self._reader.start()

    def add(
        self,
        parts: Sequence[MinutePart],
        clocks: Mapping[int, float],
        spend: Sequence[SpendTick] = (),
    ) -> None:
        """Take one call's parts, clocks and spend, to :meth:`send` with the step's others."""
        self._unsent.append(JudgeStep(parts=list(parts), clocks=dict(clocks), spend=list(spend)))

    def send(self) -> list[Alert]:
        """Send what was added since the last send (one frame a step of the caller: the judge
        is handed its work in pieces of minutes, not of seconds); return the alerts the judge
        has made so far, of this step or earlier ones, in order."""
        if self._unsent:
            self._hand(self._encoder.encode(self._unsent))
            self._unsent = []
        return self._take(wait=False)

    def finish(self) -> list[Alert]:
        """Send what is left, judge everything still waiting (:meth:`FleetStage.finish`) and
        return every alert not returned yet; the judging process then ends."""
        alerts = self.send()
        self._hand(None)
        alerts += self._take(wait=True)
        self._child.wait()
        return alerts

    def close(self) -> None:
        """Stop the judging process if it still runs (a replay that failed or was stopped)."""
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()

    def _hand(self, frame: bytes | None) -> None:
        """Queue a frame for the writer; raise if the judge is gone (no waiting forever on a
        full queue)."""
        while True:
            try:
                self._steps.put(frame, timeout=WAIT_S)
                return
            except queue.Full:
                self._take(wait=False)  # a failure reported by the judge raises here
                if self._child.poll() is not None:
                    raise self._exited() from None

    def _take(self, *, wait: bool) -> list[Alert]:
        """The alerts that came back; with ``wait``, up to the judge's last."""
        alerts: list[Alert] = []
        while True:
            try:
                what, payload = (
                    self._replies.get(timeout=WAIT_S) if wait else self._replies.get_nowait()
                )
            except queue.Empty:
                if not wait:
                    return alerts
                continue
            if what == "failed":
                text = str(payload).rstrip()
                raise JudgeFailed(f"the fleet judge failed: {text.splitlines()[-1]}\n{text}")
            if what == "exited":
                raise self._exited()
            alerts.extend(cast(list[Alert], payload))
            if what == "done":
                return alerts

    def _exited(self) -> JudgeFailed:
        code = self._child.wait()
        return JudgeFailed(f"the fleet judge exited (code {code}) before it had judged everything")

    def _write(self, stdin: IO[bytes]) -> None:
        try:
            while (frame := self._steps.get()) is not None:
                _write_frame(stdin, frame)
            _write_frame(stdin, b"")  # the end
            stdin.close()
        except (BrokenPipeError, ValueError):  # the judge is gone: the reader says so
            return

    def _read(self, stdout: IO[bytes]) -> None:
        while (frame := _read_frame(stdout)) is not None:
            self._replies.put(pickle.loads(frame))
        self._replies.put(("exited", None))  # only read after "done" if something went wrong


def _write_frame(out: IO[bytes], body: bytes) -> None:
    out.write(len(body).to_bytes(_LENGTH, "big") + body)
    out.flush()


def _read_frame(source: IO[bytes]) -> bytes | None:
    """The next frame's body; None at the end of the stream."""
    head = source.read(_LENGTH)
    if len(head) < _LENGTH:
        return None
    return source.read(int.from_bytes(head, "big"))


def serve(source: IO[bytes], out: IO[bytes]) -> None:
    """The judging process: the settings first, then a fleet stage fed every step until the
    end (an empty frame); its alerts go out as they are made."""

    def reply(what: str, payload: object) -> None:
        _write_frame(out, pickle.dumps((what, payload)))

    try:
        first = _read_frame(source)
        if first is None:
            return
        settings, partitions = pickle.loads(first)
        detectors = default_detectors(max_entities=settings.worker.max_entities)
        fleet = FleetStage(settings, detectors, partitions)
        decoder = msgspec.msgpack.Decoder(list[JudgeStep])
        with long_run_collector():
            while frame := _read_frame(source):
                made = []
                for step in decoder.decode(frame):
                    made += fleet.add(step.parts, step.clocks, (), step.spend)
                if made:
                    reply("alerts", made)
        if frame is not None:  # the end, rather than a caller gone
            reply("done", fleet.finish())
    except Exception:
        reply("failed", traceback.format_exc())


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller stops it (FleetJudge.close)
    frames_out, sys.stdout = sys.stdout.buffer, sys.stderr  # a stray print must not break a frame
    serve(sys.stdin.buffer, frames_out)
