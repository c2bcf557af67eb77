"""Who is looking: the viewer's roles decide which pages exist, their tenants what data they see.

There is no login yet (issue 9 adds one: Streamlit's OIDC or a local users file), so every
viewer is the local operator with every role and all tenants. The pages already ask
:func:`current_viewer` for their scope and pass ``viewer.tenants`` to the data module, and the
navigation lists only the pages a viewer's roles allow, so adding login means replacing
:func:`current_viewer` and nothing in the pages.

>>> Viewer("ops", frozenset({"finance"}), ("acme",)).can("finance")
True
>>> Viewer("ops", frozenset({"finance"})).can("security")
False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import streamlit as st

ROLES: Final = ("security", "engineering", "finance", "operations")
"""Security triages alerts, engineering reads efficiency, finance usage, operations health."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """One person using the dashboard.

    ``tenants`` is None for "all tenants", else the only tenants whose data they may see.
    """

    name: str
    roles: frozenset[str]
    tenants: tuple[str, ...] | None = None

    def can(self, role: str) -> bool:
        """True if this viewer holds ``role``."""
        return role in self.roles


LOCAL_OPERATOR: Final = Viewer("local operator", frozenset(ROLES))


def current_viewer() -> Viewer:
    """The viewer of this session (the local operator until login exists)."""
    return LOCAL_OPERATOR


def require(role: str) -> Viewer:
    """The current viewer, or stop the page with a message if they lack ``role``."""
    viewer = current_viewer()
    if not viewer.can(role):
        st.error(f"This page is for the {role} role; ask an administrator for access.")
        st.stop()
    return viewer
