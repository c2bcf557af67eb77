"""A server whose requests time out is paged as the server, not as its model; a model whose
servers all run away is the model's fault; a runaway key pages neither."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from pipeline.detectors.base import EntityMinute, Group
from pipeline.detectors.runaway import RunawayDetector
from pipeline.minute_view import build_minute_view, build_peek_view

T0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())
QUIET = 120  # minutes of usual traffic before anything changes
INCIDENT = range(QUIET, QUIET + 20)
SERVERS = [f"m-{i}" for i in range(1, 7)]
KEYS = [f"k{i}" for i in range(1, 13)]
USUAL = 0.01  # every request's usual chance to be truncated or time out

Rate = Callable[[int, str, str], float]  # (minute, key, server) -> chance


def _half(rng: random.Random, minute: int, rate: Rate, sticky: str | None) -> list[Group]:
    """Half a minute of the fleet: 12 keys sending about 2-3 requests to each of the model's
    six servers (about 60 a minute a server); the ``sticky`` key sends all of its to m-6."""
    groups: list[Group] = []
    for key in KEYS:
        shares = {"m-6": len(SERVERS)} if key == sticky else dict.fromkeys(SERVERS, 1)
        for server, share in shares.items():
            requests = sum(1 + rng.randrange(4) for _ in range(share))
            p = rate(minute, key, server)
            runaway = sum(rng.random() < p for _ in range(requests))
            sums = EntityMinute(requests=requests, runaway=runaway)
            groups.append((("t", key, "m", "standard", server), sums))
    return groups


def _paged(seed: int, rate: Rate, sticky: str | None = None) -> set[tuple[str, str]]:
    """The entities paged (with a peek half way through each minute, as the fleet stage does)
    from the start of the incident on; fails if anything is paged before it."""
    rng = random.Random(seed)
    detector = RunawayDetector(contexts_from=None)
    paged: set[tuple[str, str]] = set()
    for i in range(QUIET + 40):
        start = T0 + 60 * i
        first = _half(rng, i, rate, sticky)
        whole = first + _half(rng, i, rate, sticky)
        findings = [
            *detector.peek_minute(build_peek_view(start, first, start + 30)),
            *detector.observe_minute(build_minute_view(start, whole)),
        ]
        named = {(f.entity_type, f.entity_id) for f in findings}
        assert i >= QUIET or not named, (i, named)
        paged |= named
    return paged


@pytest.mark.parametrize("seed", range(4))
def test_a_server_timing_out_is_paged_as_the_server_and_not_as_its_model(seed: int) -> None:
    """One of six servers is throttled: 12 % of its requests time out for 20 minutes (the
    model's rate triples, which paged the model before servers were judged; each key's nearly
    triples too, which paged a key on seed 2 before the server explained it)."""

    def rate(minute: int, key: str, server: str) -> float:
        return 0.12 if minute in INCIDENT and server == "m-6" else USUAL

    assert _paged(seed, rate) == {("server", "m-6")}


@pytest.mark.parametrize("seed", range(4))
def test_a_hung_server_is_paged_as_the_server_and_not_as_every_key_it_serves(seed: int) -> None:
    """Every request of one of six servers times out: each key's rate goes from 1 % to 17 %."""

    def rate(minute: int, key: str, server: str) -> float:
        return 1.0 if minute in INCIDENT and server == "m-6" else USUAL

    assert _paged(seed, rate) == {("server", "m-6")}


@pytest.mark.parametrize("seed", range(4))
def test_a_runaway_key_sent_to_one_server_alone_is_paged_as_the_key(seed: int) -> None:
    """Sticky routing: the runaway key's requests all go to one server, which is usual without
    them."""

    def rate(minute: int, key: str, server: str) -> float:
        return 0.5 if minute in INCIDENT and key == "k1" else USUAL

    assert _paged(seed, rate, sticky="k1") == {("api_key", "k1")}


@pytest.mark.parametrize("seed", range(4))
def test_a_model_whose_servers_all_run_away_is_paged_as_the_model(seed: int) -> None:
    def rate(minute: int, key: str, server: str) -> float:
        return 0.12 if minute in INCIDENT else USUAL

    assert ("model", "m") in _paged(seed, rate)


@pytest.mark.parametrize("seed", range(4))
def test_a_runaway_key_is_paged_as_the_key_alone(seed: int) -> None:
    """Half of one key's requests are truncated: each server's rate rises with them, but the
    key explains it, on every server and on the model."""

    def rate(minute: int, key: str, server: str) -> float:
        return 0.5 if minute in INCIDENT and key == "k1" else USUAL

    assert _paged(seed, rate) == {("api_key", "k1")}


def test_a_detector_saved_before_servers_were_judged_judges_them_once_restored() -> None:
    saved = pickle.dumps(RunawayDetector(entity_types=("api_key", "model")))
    assert pickle.loads(saved).entity_types == ("api_key", "server", "model")
