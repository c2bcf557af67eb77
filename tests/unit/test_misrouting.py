"""The advisor's planted findings: a misrouted band whose extra compute buys nothing, and its
benign twin (a route trial whose extra compute helps), each against the same fleet unplanted."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import numpy as np
import pytest

from pipeline.evaluation import evaluate
from pipeline.simulate import (
    FleetConfig,
    Misrouting,
    RouteTrial,
    collect,
    decode_labels,
    default_suite,
    encode_labels,
    labels_for,
    simulate,
)

CONFIG: Final = FleetConfig(tenants=8, rate=3.0, hours=1.0, seed=11)
BAND: Final = dict(entity_id="reasoner-large", low=0.4, high=0.6, from_route="standard",
                   to_route="deep", start=CONFIG.start,
                   end=CONFIG.start + timedelta(hours=1), intensity=0.5)  # fmt: skip
PLAIN: Final = collect(simulate(CONFIG))


def in_band(a: dict[str, np.ndarray]) -> np.ndarray:
    d = a["difficulty"]
    return np.asarray((a["model"] == "reasoner-large") & (d >= 0.4) & (d < 0.6))


@pytest.mark.parametrize("cls", [Misrouting, RouteTrial])
def test_only_a_share_of_the_band_moves_and_other_traffic_stays_identical(
    cls: type[Misrouting],
) -> None:
    planted = collect(simulate(CONFIG, [cls(**BAND)]))  # type: ignore[arg-type]
    moved = planted["route"] != PLAIN["route"]
    band = in_band(PLAIN) & (PLAIN["route"] == "standard")
    assert not (moved & ~band).any()
    assert (planted["route"][moved] == "deep").all()
    assert 0.4 < moved.sum() / band.sum() < 0.6
    for column in ("event_id", "tenant_id", "status"):
        assert np.array_equal(planted[column][~moved], PLAIN[column][~moved])
    for column in ("ts_ms", "difficulty", "gpu_ms", "confidence"):
        assert np.array_equal(planted[column][~moved], PLAIN[column][~moved], equal_nan=True)
    assert planted["gpu_ms"][moved].mean() > 3 * PLAIN["gpu_ms"][moved].mean()


def test_misrouted_requests_answer_as_their_natural_route_would_and_the_trial_does_better(
) -> None:
    wasted = collect(simulate(CONFIG, [Misrouting(**BAND)]))  # type: ignore[arg-type]
    helped = collect(simulate(CONFIG, [RouteTrial(**BAND)]))  # type: ignore[arg-type]
    for planted in (wasted, helped):  # each scenario draws its own share of the band
        moved = planted["route"] != PLAIN["route"]
        answered = moved & (planted["status"] == "ok") & (PLAIN["status"] == "ok")
        assert answered.sum() > 50
        gain = planted["confidence"][answered] - PLAIN["confidence"][answered]
        if planted is wasted:
            assert (gain == 0).all()
        else:
            assert gain.mean() > 0.1 and (gain >= 0).mean() > 0.95


def test_the_label_names_band_and_routes_is_benign_and_leaves_scoring_alone() -> None:
    (label,) = labels_for([Misrouting(**BAND)])  # type: ignore[arg-type]
    assert (label.kind, label.benign, label.entity_type, label.entity_id) == (
        "misrouting", True, "model", "reasoner-large"
    )
    assert (label.band, label.routes, label.intensity) == ((0.4, 0.6), ("standard", "deep"), 0.5)
    assert decode_labels(encode_labels([label])) == [label]
    assert evaluate([], [label]).recall == 1.0  # nothing for the detectors to find
    suite = default_suite(FleetConfig(hours=24.0, seed=7))
    assert not any(isinstance(s, Misrouting) for s in suite)
    assert b'"band"' not in encode_labels(labels_for(suite))


def test_unknown_routes_are_refused_by_name() -> None:
    bad = Misrouting(**{**BAND, "to_route": "turbo"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="routes must be among"):
        collect(simulate(CONFIG, [bad]))
