"""What reaches a pager: the webhook sends ``medium`` and above by default, and severity follows
how unusual a finding is for its entity and how much compute is at stake."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.alerts import grade
from pipeline.config import WorkerSettings
from pipeline.records import Alert
from pipeline.webhook import WebhookNotifier

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def alert(severity: str) -> Alert:
    return Alert(alert_id=severity, kind="volume_spike", entity_type="api_key", entity_id="k",
                 window_start=T0, window_end=T0, detected_at=T0, score=1.0,
                 severity=severity, summary="s", evidence={}, event_count=1)  # type: ignore[arg-type]  # fmt: skip


def test_the_webhook_sends_medium_and_above_by_default() -> None:
    posted: list[bytes] = []
    notifier = WebhookNotifier("http://hook", post=lambda url, body, key: posted.append(body))
    assert WorkerSettings().webhook_min_severity == notifier.min_severity == "medium"
    for severity in ("low", "medium", "high", "critical", "low"):
        notifier.notify(alert(severity))
    notifier.close()
    assert len(posted) == 3 and notifier.held_back == 2
    assert not any(b'"severity":"low"' in body.replace(b" ", b"") for body in posted)


def test_the_webhook_threshold_is_a_setting() -> None:
    posted: list[bytes] = []
    notifier = WebhookNotifier("http://hook", post=lambda url, body, key: posted.append(body),
                               min_severity="low")  # fmt: skip
    notifier.notify(alert("low"))
    notifier.close()
    assert len(posted) == 1 and notifier.held_back == 0


def test_a_large_effect_is_paged_at_once_even_before_its_score_grows() -> None:
    # an 18x reasoning inflation whose score has just passed its threshold
    assert grade(6.5, 6.0, magnitude=18.0) == "critical"
    assert grade(6.5, 6.0, magnitude=18.0, stake=0.02) == "critical"


def test_a_sure_finding_about_a_trickle_of_compute_is_not_loud() -> None:
    assert grade(30.0, 6.0, magnitude=10.0, stake=0.00005) == "high"
    assert grade(30.0, 6.0, magnitude=10.0, stake=0.0) == "high"
    assert grade(7.0, 6.0, magnitude=2.5, stake=0.0) == "medium"


def test_a_large_stake_does_not_make_a_marginal_finding_louder() -> None:
    assert grade(6.1, 6.0, magnitude=1.3, stake=0.4) == "low"
