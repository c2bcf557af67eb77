"""A model's confidence is judged given its requests' routes: harder problems go to deeper
routes, whose answers are less sure, so a tenant moving to harder problems lowers a model's mean
confidence without any collapse. The benign twin (the mix moving to the deep route) is not
paged; judged on its mean confidence alone (a view without routes), it is. A collapse on every
route is still paged at once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.detectors import ConfidenceCollapseDetector, EntityMinute, MinuteView

T0 = datetime(2026, 3, 2, tzinfo=UTC)
USUAL = {"fast": 0.85, "deep": 0.60}  # each route's usual mean confidence
REQUESTS = 200  # a minute


def minute(i: int, rng: random.Random, deep_share: float, fall: float, routes: bool) -> MinuteView:
    """Minute ``i``: ``deep_share`` of the requests on the deep route, each request's confidence
    its route's usual (sd 0.15) times ``1 - fall``."""
    deep = round(REQUESTS * deep_share)
    parts = {}
    for route, n in (("fast", REQUESTS - deep), ("deep", deep)):
        total = sum(rng.gauss(USUAL[route], 0.15) * (1 - fall) for _ in range(n))
        parts[("m", route)] = EntityMinute(
            requests=n, confidence_sum=total, confidence_count=n, gpu_ms=1e3 * n
        )
    model = EntityMinute()
    for part in parts.values():
        model.add(part)
    start = T0 + timedelta(minutes=i)
    return MinuteView(
        start, start + timedelta(minutes=1), {"model": {"m": model}}, model,
        model_route=parts if routes else {},
    )  # fmt: skip


def alarms(seed: int, deep_share: list[float], fall: list[float], routes: bool = True) -> list[int]:
    rng = random.Random(seed)
    detector = ConfidenceCollapseDetector()
    return [
        i
        for i, (share, drop) in enumerate(zip(deep_share, fall, strict=True))
        if detector.observe_minute(minute(i, rng, share, drop, routes))
    ]


def harder_problems() -> list[float]:
    """3 hours at 20 % deep, a move to 70 % over 20 minutes, then 3 hours there."""
    return [0.2] * 180 + [0.2 + 0.5 * k / 20 for k in range(20)] + [0.7] * 180


@pytest.mark.parametrize("seed", range(4))
def test_a_model_whose_requests_move_to_its_deep_route_is_not_paged(seed: int) -> None:
    shares = harder_problems()
    assert alarms(seed, shares, [0.0] * len(shares)) == []


def test_judged_on_its_mean_confidence_alone_the_same_move_is_paged() -> None:
    shares = harder_problems()
    assert all(alarms(seed, shares, [0.0] * len(shares), routes=False) for seed in range(4))


@pytest.mark.parametrize("seed", range(4))
def test_a_collapse_on_every_route_is_paged_within_two_minutes(seed: int) -> None:
    shares = [0.2] * 240
    fall = [0.2 if 180 <= i < 210 else 0.0 for i in range(240)]
    found = alarms(seed, shares, fall)
    assert found and 180 <= found[0] <= 181
