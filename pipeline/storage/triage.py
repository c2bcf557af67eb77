"""Alert triage: security acknowledges and resolves alerts; every action is kept (audit trail).

The current state of an alert is its latest ``alert_triage`` row (see ``queries.alerts_feed``);
an alert without one is ``new``.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Final

from clickhouse_connect.driver.client import Client

__all__ = ["TRIAGE_STATUSES", "record_triage"]

TRIAGE_STATUSES: Final = ("new", "acknowledged", "resolved")


def record_triage(
    client: Client,
    alert_id: str,
    status: str,
    actor: str,
    note: str = "",
    at: datetime | None = None,
) -> None:
    """Append one triage action (``status`` by ``actor`` at ``at``, default now) for an alert."""
    if status not in TRIAGE_STATUSES:
        raise ValueError(f"unknown triage status {status!r}; expected one of {TRIAGE_STATUSES}")
    if not actor.strip():
        raise ValueError("a triage action needs the actor's name")
    alert_uuid = uuid.UUID(str(alert_id))
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("triage time must be timezone-aware")
    client.insert(
        "alert_triage",
        [[alert_uuid], [status], [actor], [note], [when], [time.time_ns()]],
        column_names=["alert_id", "status", "actor", "note", "updated_at", "version"],
        column_oriented=True,
    )
