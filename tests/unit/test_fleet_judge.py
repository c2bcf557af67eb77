"""The fleet stage judging in a process of its own makes what it makes in-process.

A replay hands judging to a child process (:mod:`pipeline.fleet_judge`) so that it runs beside
the partitions, as production's second stage does. These tests hold it to the same alerts in
the same order, and to failing loudly, never hanging, when the child fails or dies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pipeline.embedded
from pipeline.config import Settings
from pipeline.embedded import replay_file
from pipeline.fleet_judge import FleetJudge, JudgeFailed
from pipeline.records import Message
from pipeline.topology import Topology
from tests.unit.test_topology import _messages, _run

SETTINGS = Settings()


@pytest.fixture(scope="module")
def messages() -> list[Message]:
    return _messages()[0]


def test_judging_apart_makes_the_same_alerts_in_the_same_order(messages: list[Message]) -> None:
    together = _run(Topology(SETTINGS, partitions=4), messages)
    topology = Topology(SETTINGS, partitions=4, judge_apart=True)
    apart = _run(topology, messages)
    assert together, "the stream must raise alerts for the comparison to mean anything"
    assert apart == together
    assert topology.counters["alerts"] == len(together)
    assert topology.judge is not None and topology.judge._child.returncode == 0


def test_a_judge_that_dies_is_an_error_not_a_hang(messages: list[Message]) -> None:
    topology = Topology(SETTINGS, partitions=4, judge_apart=True)
    topology.process(messages[:5_000])
    assert topology.judge is not None
    topology.judge._child.kill()
    with pytest.raises(JudgeFailed, match=r"exited \(code -9\) before it had judged everything"):
        for start in range(5_000, len(messages), 5_000):
            topology.process(messages[start : start + 5_000])
        topology.finish()


def test_a_judge_that_fails_says_why() -> None:
    judge = FleetJudge(SETTINGS, partitions=1)
    judge._hand(b"\x93not a step")
    reason = r"^the fleet judge failed: msgspec.ValidationError: Expected `array`"
    with pytest.raises(JudgeFailed, match=reason):
        judge.finish()
    judge.close()


def test_a_replay_that_fails_stops_its_judge(
    tmp_path: Path, messages: list[Message], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(m.value for m in messages) + b"\n")
    made: list[Topology] = []

    class Recorded(Topology):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)

    def handler_that_fails(_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pipeline.embedded, "judges_apart", lambda _: True)
    monkeypatch.setattr(pipeline.embedded, "Topology", Recorded)
    with pytest.raises(OSError, match="disk full"):
        replay_file(events, SETTINGS, [handler_that_fails])
    [topology] = made
    assert topology.judge is not None and topology.judge._child.poll() is not None
