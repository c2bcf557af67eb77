"""The evaluation's rules: which alerts are about which incidents, and which false ones fall
inside a benign shift (a key of the shifted tenant, a server of the rolled-out model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from pipeline.evaluation import Membership, evaluate
from pipeline.events import example_event
from pipeline.records import Alert
from pipeline.simulate.labels import Incident

T0: Final = datetime(2026, 3, 2, 17, 27, tzinfo=UTC)
WITHIN: Final = Membership(
    tenant_of_key={"ak-1": "tenant-02", "ak-2": "tenant-02", "ak-9": "tenant-09"},
    model_of_server={"reasoner-large-01": "reasoner-large", "chat-lite-01": "chat-lite"},
)


def incident(kind: str, entity_type: str, entity_id: str, *, benign: bool) -> Incident:
    """Of tenant-02, for 43 minutes from :data:`T0`."""
    return Incident(kind=kind, benign=benign, entity_type=entity_type, entity_id=entity_id,
                    tenant_id="tenant-02", start=T0, end=T0 + timedelta(minutes=43),
                    intensity=0.5, variant="blatant")  # fmt: skip


def alert(kind: str, entity_type: str, entity_id: str, minutes: float = 40.0) -> Alert:
    at = T0 + timedelta(minutes=minutes)
    return Alert(alert_id=f"{kind}-{entity_id}-{minutes}", kind=kind,  # type: ignore[arg-type]
                 entity_type=entity_type, entity_id=entity_id,  # type: ignore[arg-type]
                 window_start=at - timedelta(minutes=6), window_end=at, detected_at=at,
                 score=20.0, severity="high", summary="", evidence={}, event_count=10)  # fmt: skip


HARDER: Final = incident("harder_problems", "tenant", "tenant-02", benign=True)
ROLLOUT: Final = incident("fleet_rollout", "model", "reasoner-large", benign=True)
ATTACK: Final = incident("runaway_generation", "api_key", "ak-2", benign=False)


def test_a_false_alert_on_a_key_of_a_tenant_in_a_benign_shift_is_inside_it() -> None:
    """A key of tenant-02 paged while tenant-02 moved to harder problems: inside the shift
    (the rule before named only the tenant itself); a key of another tenant is not."""
    alerts = [
        alert("runaway_generation", "api_key", "ak-1"),
        alert("volume_spike", "api_key", "ak-9"),
    ]
    report = evaluate(alerts, [HARDER, ATTACK], WITHIN)
    assert (report.false_episodes, report.benign_false_episodes) == (2, 1)
    assert evaluate(alerts, [HARDER, ATTACK]).benign_false_episodes == 0  # without memberships


def test_a_false_alert_on_a_server_of_a_model_in_its_rollout_is_inside_it() -> None:
    alerts = [
        alert("efficiency_degradation", "server", "reasoner-large-01"),
        alert("efficiency_degradation", "server", "chat-lite-01"),
    ]
    report = evaluate(alerts, [ROLLOUT, ATTACK], WITHIN)
    assert (report.false_episodes, report.benign_false_episodes) == (2, 1)


def test_memberships_make_no_false_alert_true() -> None:
    """Another key of the attacked key's tenant is still false: memberships only place false
    alerts inside benign shifts."""
    report = evaluate([alert("runaway_generation", "api_key", "ak-1")], [ATTACK], WITHIN)
    assert (report.true_episodes, report.false_episodes, report.recall) == (0, 1, 0.0)


def test_memberships_are_what_the_events_say() -> None:
    within = Membership()
    within.add([example_event(api_key_id="ak-7", tenant_id="tenant-07", server_id="s-1",
                              model="chat-lite")])  # fmt: skip
    assert within.tenant_of_key == {"ak-7": "tenant-07"}
    assert within.model_of_server == {"s-1": "chat-lite"}
