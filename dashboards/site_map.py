"""The dashboard's pages: file, title, URL path and the role each one serves.

The overview is the app's root URL; every role page has a fixed path, so a bookmark or a
link from an alert e-mail keeps working whichever pages a viewer's roles allow.

>>> [p.url_path for p in ROLE_PAGES]
['alerts', 'efficiency', 'allocation', 'usage', 'budgets', 'health']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import streamlit as st

from access import Viewer


@dataclass(frozen=True, slots=True)
class PageSpec:
    """One page of the app; ``role`` None means every viewer sees it."""

    path: str
    title: str
    icon: str
    url_path: str
    role: str | None
    blurb: str


OVERVIEW: Final = PageSpec("app_pages/overview.py", "Overview", ":material/home:", "", None,
                           "What is in the store and where to go.")
ROLE_PAGES: Final = (
    PageSpec("app_pages/alerts.py", "Alerts", ":material/notifications_active:", "alerts",
             "security", "Compute anomalies with their evidence; acknowledge and resolve."),
    PageSpec("app_pages/efficiency.py", "Efficiency", ":material/speed:", "efficiency",
             "engineering", "GPU time per token, reasoning, latency and failures, drilled down."),
    PageSpec("app_pages/allocation.py", "Allocation", ":material/alt_route:", "allocation",
             "engineering", "Where a deeper route's compute buys confidence, and where a cheaper "
             "route would do."),
    PageSpec("app_pages/usage.py", "Usage & cost", ":material/payments:", "usage", "finance",
             "Per-tenant usage and cost for any period, with CSV and Parquet exports."),
    PageSpec("app_pages/budgets.py", "Budgets", ":material/savings:", "budgets", "finance",
             "Spend against each budget and where the period is heading; set budgets."),
    PageSpec("app_pages/health.py", "Pipeline health", ":material/monitor_heart:", "health",
             "operations", "Ingest rate, freshness, dead letters and the ClickHouse sink."),
)


def pages_for(viewer: Viewer) -> list[PageSpec]:
    """The overview and the pages the viewer's roles allow, in menu order."""
    return [OVERVIEW, *(p for p in ROLE_PAGES if p.role is None or viewer.can(p.role))]


def st_page(spec: PageSpec) -> st.Page:
    """The ``st.Page`` for a spec (the overview is the default page, at the root URL)."""
    if spec is OVERVIEW:
        return st.Page(spec.path, title=spec.title, icon=spec.icon, default=True)
    return st.Page(spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path)
