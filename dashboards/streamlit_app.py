"""computewatch dashboard: alerts for security, efficiency for engineers, usage and cost for
finance, and the pipeline's health, read from ClickHouse.

Run with ``computewatch dashboard`` (or ``streamlit run dashboards/streamlit_app.py``); the
settings come from ``COMPUTEWATCH_*`` (see :mod:`pipeline.config`). Each page has a fixed URL
path (``/alerts``, ``/efficiency``, ``/usage``, ``/health``) and a role; the navigation lists
the pages the viewer's roles allow (see :mod:`access`).
"""

import streamlit as st

import access
import components
import data

st.set_page_config(page_title="computewatch", page_icon=":material/monitoring:", layout="wide")

PAGES = (
    ("security", st.Page("app_pages/alerts.py", title="Alerts",
                         icon=":material/notifications_active:", url_path="alerts")),
    ("engineering", st.Page("app_pages/efficiency.py", title="Efficiency",
                            icon=":material/speed:", url_path="efficiency")),
    ("finance", st.Page("app_pages/usage.py", title="Usage & cost",
                        icon=":material/payments:", url_path="usage")),
    ("operations", st.Page("app_pages/health.py", title="Pipeline health",
                           icon=":material/monitor_heart:", url_path="health")),
)

viewer = access.current_viewer()
page = st.navigation([page for role, page in PAGES if viewer.can(role)])

with st.sidebar:
    st.caption(f"Signed in as **{viewer.name}**")
    components.refresh_controls()
    source = data.status()
    st.caption(f"Data: `{source.target}` · database `{source.database}`")

page.run()
