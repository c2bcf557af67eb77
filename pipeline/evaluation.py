"""Score alerts against labelled incidents: detection, delay, false alerts, precision and recall.

Rules (also in the README):

* an alert *relates* to an incident when it names the incident's entity (or, for an api-key
  incident, the key's tenant) and was raised between the incident's start and ``grace`` after
  its end; ``entity_id == "*"`` (fleet-wide) relates to every entity;
* an incident is *detected* when a related alert of the same kind exists; its delay is the
  first such alert's ``detected_at`` minus the incident start;
* alerts of one kind on one entity less than ``episode_gap`` apart form one *episode*; an
  episode is true when one of its alerts relates to an attack or fault, and false otherwise
  (separately counted when it relates to a benign shift, and when one of its alerts was
  ``medium`` or above: what the webhook would have sent by default);
* a false alert is *inside* a benign shift of a tenant when it names the tenant or one of its
  api keys, and inside one of a model when it names the model or one of its servers (which
  tenant a key belongs to and which model a server serves: :class:`Membership`, from the
  events).

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.simulate.labels import Incident
>>> t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
>>> inc = Incident(kind="volume_spike", benign=False, entity_type="api_key", entity_id="k1",
...                tenant_id="t1", start=t0, end=t0 + timedelta(minutes=30), intensity=6.0,
...                variant="blatant")
>>> from pipeline.alerts import at_least
>>> from pipeline.records import Alert
>>> alert = Alert(alert_id="a", kind="volume_spike", entity_type="tenant", entity_id="t1",
...               window_start=t0, window_end=t0 + timedelta(minutes=2),
...               detected_at=t0 + timedelta(minutes=2), score=9.0, severity="high",
...               summary="", evidence={}, event_count=10)
>>> report = evaluate([alert], [inc])
>>> report.recall, report.precision, report.rows[0].median_delay_s
(1.0, 1.0, 120.0)
>>> shift = Incident(kind="harder_problems", benign=True, entity_type="tenant", entity_id="t2",
...                  tenant_id="t2", start=t0, end=t0 + timedelta(minutes=30), intensity=0.5,
...                  variant="blatant")
>>> import msgspec
>>> key_alert = msgspec.structs.replace(alert, entity_type="api_key", entity_id="k2")
>>> within = Membership(tenant_of_key={"k2": "t2"})
>>> evaluate([key_alert], [inc, shift], within).benign_false_episodes
1
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from pipeline.alerts import at_least
from pipeline.events import AllocationEvent
from pipeline.records import Alert
from pipeline.simulate.labels import ALL_ENTITIES, Incident

GRACE = timedelta(minutes=10)
EPISODE_GAP = timedelta(minutes=10)
NOTIFIED = "medium"  # the webhook's default: what a team is paged for


@dataclass(slots=True)
class Membership:
    """Which tenant each api key belongs to and which model each server serves (as the events
    say; :meth:`add` them)."""

    tenant_of_key: dict[str, str] = field(default_factory=dict)
    model_of_server: dict[str, str] = field(default_factory=dict)

    def add(self, events: Sequence[AllocationEvent]) -> None:
        for e in events:
            self.tenant_of_key[e.api_key_id] = e.tenant_id
            self.model_of_server[e.server_id] = e.model

    def inside(self, alert: Alert, incident: Incident) -> bool:
        """Whether ``alert`` names an api key of the incident's tenant or a server of its
        model."""
        if incident.entity_type == "tenant" and alert.entity_type == "api_key":
            return self.tenant_of_key.get(alert.entity_id) == incident.entity_id
        if incident.entity_type == "model" and alert.entity_type == "server":
            return self.model_of_server.get(alert.entity_id) == incident.entity_id
        return False


def relates(
    alert: Alert, incident: Incident, grace: timedelta = GRACE, within: Membership | None = None
) -> bool:
    """Whether ``alert`` is about ``incident``: in its time (and ``grace`` after), on its
    entity or, for a key's incident, the key's tenant; with ``within``, also on a key of a
    tenant's incident or a server of a model's."""
    if not incident.start <= alert.detected_at <= incident.end + grace:
        return False
    if incident.entity_id == ALL_ENTITIES:
        return True
    if (alert.entity_type, alert.entity_id) == (incident.entity_type, incident.entity_id):
        return True
    if alert.entity_type == "tenant" and alert.entity_id == incident.tenant_id:
        return True
    return within is not None and within.inside(alert, incident)


@dataclass(slots=True)
class KindRow:
    kind: str
    variant: str
    incidents: int = 0
    detected: int = 0
    delays_s: list[float] = field(default_factory=list)

    @property
    def median_delay_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None


@dataclass(slots=True)
class Report:
    rows: list[KindRow]
    episodes: int
    true_episodes: int
    false_episodes: int
    benign_false_episodes: int
    notified_false_episodes: int
    missed: list[Incident]
    delays_s: list[float]
    repeated_alerts: int = 0  # alerts with the kind, entity and window of an earlier one

    @property
    def recall(self) -> float:
        total = sum(r.incidents for r in self.rows)
        return sum(r.detected for r in self.rows) / total if total else 1.0

    @property
    def precision(self) -> float:
        return self.true_episodes / self.episodes if self.episodes else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def median_delay_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None

    def table(self) -> str:
        """A Markdown table: one row per incident kind and variant, then the totals."""
        lines = [
            "| incident kind | variant | incidents | detected | median delay |",
            "|---|---|---:|---:|---:|",
        ]
        for r in self.rows:
            delay = "-" if r.median_delay_s is None else f"{r.median_delay_s / 60:.1f} min"
            lines.append(f"| {r.kind} | {r.variant} | {r.incidents} | {r.detected} | {delay} |")
        delay = "-" if self.median_delay_s is None else f"{self.median_delay_s / 60:.1f} min"
        lines += [
            "",
            f"recall {self.recall:.2f} · precision {self.precision:.2f} (over {self.episodes} "
            f"alert episodes) · F1 {self.f1:.2f} · median delay {delay} · false episodes "
            f"{self.false_episodes} (inside benign shifts: {self.benign_false_episodes}; notified, "
            f"medium and above: {self.notified_false_episodes}) · repeated alerts "
            f"{self.repeated_alerts}",
        ]
        return "\n".join(lines)


def evaluate(
    alerts: Sequence[Alert], incidents: Sequence[Incident], within: Membership | None = None
) -> Report:
    """Score ``alerts`` against ``incidents``; ``within`` places a false alert on a key or a
    server inside its tenant's or model's benign shift."""
    attacks = [i for i in incidents if not i.benign]
    benign = [i for i in incidents if i.benign]
    rows: dict[tuple[str, str], KindRow] = {}
    missed, delays = [], []
    for incident in sorted(attacks, key=lambda i: (i.kind, i.variant, i.start)):
        row = rows.setdefault(
            (incident.kind, incident.variant), KindRow(incident.kind, incident.variant)
        )
        row.incidents += 1
        hits = [a for a in alerts if a.kind == incident.kind and relates(a, incident)]
        if hits:
            row.detected += 1
            delay = (min(a.detected_at for a in hits) - incident.start).total_seconds()
            row.delays_s.append(delay)
            delays.append(delay)
        else:
            missed.append(incident)
    episodes = _episodes(alerts)
    true = [e for e in episodes if any(relates(a, i) for a in e for i in attacks)]
    false = [e for e in episodes if not any(relates(a, i) for a in e for i in attacks)]
    inside_benign = [
        e for e in false if any(relates(a, i, within=within) for a in e for i in benign)
    ]
    notified = [e for e in false if any(at_least(a.severity, NOTIFIED) for a in e)]
    return Report(
        rows=list(rows.values()),
        episodes=len(episodes),
        true_episodes=len(true),
        false_episodes=len(false),
        benign_false_episodes=len(inside_benign),
        notified_false_episodes=len(notified),
        missed=missed,
        delays_s=delays,
        repeated_alerts=len(alerts) - len({_identity(a) for a in alerts}),
    )


def _identity(alert: Alert) -> tuple[str, str, str, object, object]:
    """What makes two alerts one: the same kind, entity and window."""
    return (alert.kind, alert.entity_type, alert.entity_id, alert.window_start, alert.window_end)


def _episodes(alerts: Sequence[Alert]) -> list[list[Alert]]:
    by_entity: dict[tuple[str, str, str], list[Alert]] = defaultdict(list)
    for alert in sorted(alerts, key=lambda a: a.detected_at):
        by_entity[(alert.kind, alert.entity_type, alert.entity_id)].append(alert)
    episodes: list[list[Alert]] = []
    for series in by_entity.values():
        current = [series[0]]
        for alert in series[1:]:
            if alert.detected_at - current[-1].detected_at <= EPISODE_GAP:
                current.append(alert)
            else:
                episodes.append(current)
                current = [alert]
        episodes.append(current)
    return episodes
