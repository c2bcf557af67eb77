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
from collections.abc import Iterable, Sequence
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
            delay = "-" if r.median_delay_s is None else f"{_minutes(r.median_delay_s)} min"
            lines.append(f"| {r.kind} | {r.variant} | {r.incidents} | {r.detected} | {delay} |")
        delay = "-" if self.median_delay_s is None else f"{_minutes(self.median_delay_s)} min"
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


def across_seeds(reports: Sequence[tuple[int, Report]], hours: float) -> str:
    """One workload's reports of several seeds (``(seed, report)``, ``hours`` of traffic each)
    as Markdown: each incident kind and variant over all of them (how many found, how many
    within a minute, the median and range of the delays), each seed's line, and the figures
    the detection targets are stated in.

    >>> from datetime import UTC, datetime, timedelta
    >>> from pipeline.simulate.labels import Incident
    >>> t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    >>> def incident(key, variant):
    ...     return Incident(kind="volume_spike", benign=False, entity_type="api_key",
    ...                     entity_id=key, tenant_id="t1", start=t0,
    ...                     end=t0 + timedelta(minutes=30), intensity=6.0, variant=variant)
    >>> from pipeline.records import Alert
    >>> def alert(key, minutes, severity="high"):
    ...     return Alert(alert_id=key, kind="volume_spike", entity_type="api_key",
    ...                  entity_id=key, window_start=t0, window_end=t0,
    ...                  detected_at=t0 + timedelta(minutes=minutes), score=9.0,
    ...                  severity=severity, summary="", evidence={}, event_count=10)
    >>> incidents = [incident("k1", "blatant"), incident("k2", "subtle")]
    >>> one = evaluate([alert("k1", 0.5), alert("k2", 4)], incidents)
    >>> two = evaluate([alert("k1", 2), alert("k9", 1, "medium")], incidents)
    >>> text = across_seeds([(1, one), (2, two)], hours=6).splitlines()
    >>> print("\\n".join(text[2:4] + text[7:9]))
    | volume_spike | blatant | 2 | 2 | 1 | 1.25 min (0.5–2) |
    | volume_spike | subtle | 2 | 1 | 0 | 4 min (4–4) |
    | 1 | 1/1 | 1/1 | 1.00 (2) | 0 (0) | 0 | 2.25 min |
    | 2 | 1/1 | 0/1 | 0.50 (2) | 1 (1) | 0 | 2 min |
    >>> print("\\n".join(text[-1].split(" · ")))
    2 seeds, 12 h: blatant 2/2
    subtle 1/2 (50 %)
    precision ≥ 0.95 on 1 of 2 (lowest 0.50)
    median delay ≤ 60 s on 0 of 2
    false episodes inside benign shifts 0
    notified false episodes 1 (2.0 per 24 h)
    """
    rows: dict[tuple[str, str], KindRow] = {}
    for _, report in reports:
        for r in report.rows:
            row = rows.setdefault((r.kind, r.variant), KindRow(r.kind, r.variant))
            row.incidents += r.incidents
            row.detected += r.detected
            row.delays_s += r.delays_s
    lines = [
        "| incident kind | variant | incidents | detected | within 1 min | median delay (range) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in sorted(rows.values(), key=lambda r: (r.kind, r.variant)):
        delay = "-"
        if row.median_delay_s is not None:
            low, high = _minutes(min(row.delays_s)), _minutes(max(row.delays_s))
            delay = f"{_minutes(row.median_delay_s)} min ({low}–{high})"
        quick = sum(d <= 60 for d in row.delays_s)
        lines.append(
            f"| {row.kind} | {row.variant} | {row.incidents} | {row.detected} | {quick} | {delay} |"
        )
    lines += [
        "",
        "| seed | blatant | subtle | precision (episodes) | false (notified) "
        "| inside benign shifts | median delay |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed, report in reports:
        found = {v: _found(report.rows, v) for v in ("blatant", "subtle")}
        delay = "-" if report.median_delay_s is None else f"{_minutes(report.median_delay_s)} min"
        lines.append(
            f"| {seed} | {found['blatant'][0]}/{found['blatant'][1]} | "
            f"{found['subtle'][0]}/{found['subtle'][1]} | {report.precision:.2f} "
            f"({report.episodes}) | {report.false_episodes} ({report.notified_false_episodes}) | "
            f"{report.benign_false_episodes} | {delay} |"
        )
    blatant, subtle = (_found(rows.values(), v) for v in ("blatant", "subtle"))
    share = f" ({100 * subtle[0] / subtle[1]:.0f} %)" if subtle[1] else ""
    precise = sum(r.precision >= 0.95 for _, r in reports)
    lowest = min(r.precision for _, r in reports)
    quick = sum(r.median_delay_s is not None and r.median_delay_s <= 60 for _, r in reports)
    notified = sum(r.notified_false_episodes for _, r in reports)
    total_hours = hours * len(reports)
    lines += [
        "",
        f"{len(reports)} seeds, {total_hours:g} h: blatant {blatant[0]}/{blatant[1]} · subtle "
        f"{subtle[0]}/{subtle[1]}{share} · precision ≥ 0.95 on {precise} of {len(reports)} "
        f"(lowest {lowest:.2f}) · median delay ≤ 60 s on {quick} of {len(reports)} · false "
        f"episodes inside benign shifts {sum(r.benign_false_episodes for _, r in reports)} · "
        f"notified false episodes {notified} ({notified * 24 / total_hours:.1f} per 24 h)",
    ]
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    """A delay in minutes, as exact as delays come: first pages fall on 15 s ticks and a median
    of two is halfway between them, so one decimal would round them (0.25 to 0.2, 1.25 to 1.2,
    and 62 s to 1.0, which is over the 60 s target).

    >>> _minutes(15.0), _minutes(67.5), _minutes(180.0), _minutes(61.0)
    ('0.25', '1.125', '3', '1.017')
    """
    return f"{round(seconds / 60, 3):g}"


def _found(rows: Iterable[KindRow], variant: str) -> tuple[int, int]:
    """Incidents of ``variant`` detected, of how many."""
    of_variant = [r for r in rows if r.variant == variant]
    return sum(r.detected for r in of_variant), sum(r.incidents for r in of_variant)


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
