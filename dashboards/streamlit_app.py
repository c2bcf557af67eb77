"""computewatch dashboard: alerts for security, efficiency and allocation for engineers, usage
and cost for finance, and the pipeline's health, read from ClickHouse.

Run with ``computewatch dashboard`` (or ``streamlit run dashboards/streamlit_app.py``); the
settings come from ``COMPUTEWATCH_*`` (see :mod:`pipeline.config`). Nobody gets past
:func:`access.sign_in` without signing in when sign-in is configured (see :mod:`access`). The
overview is at ``/``; the other pages at ``/alerts``, ``/efficiency``, ``/allocation``,
``/usage`` and ``/health`` (see :mod:`site_map`); the menu lists the pages the viewer's roles allow.
"""

import streamlit as st

import access
import components
import data
import site_map

st.set_page_config(page_title="computewatch", page_icon=":material/monitoring:", layout="wide")

access.sign_in()
viewer = access.current_viewer()
page = st.navigation([site_map.st_page(spec) for spec in site_map.pages_for(viewer)])

with st.sidebar:
    access.sidebar_identity(viewer)
    components.refresh_controls()

page.run()  # before the sidebar's store status: a busy store must not hold up the page

with st.sidebar:
    source = data.status()
    st.caption(f"Data: `{source.target}` · database `{source.database}`")
