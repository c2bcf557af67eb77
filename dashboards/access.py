"""Who is looking: sign-in, then the viewer's roles decide which pages exist and their tenants
which data the pages read.

``COMPUTEWATCH_DASHBOARD_AUTH`` picks how people sign in (unset means ``auto``):

- ``oidc``: Streamlit's built-in OpenID Connect (``st.login`` / ``st.user``), configured by an
  ``[auth]`` section in ``.streamlit/secrets.toml`` (and ``pip install "streamlit[auth]"``). The
  provider says who someone is; the users file (:mod:`users`) says what they may see, by an
  entry named with their e-mail address and no password. An identity it does not list sees
  nothing.
- ``users``: a sign-in form checked against the local users file
  (``COMPUTEWATCH_DASHBOARD_USERS_FILE``: scrypt hashes, roles, tenants), five wrong passwords
  for a name lock it for a minute.
- ``none``: no sign-in; every viewer is the local operator with every role (the embedded demo on
  127.0.0.1). The sidebar says so on every page.

``auto`` is OIDC when secrets.toml has ``[auth]``, else the users file when one is set, else
none. A method that is configured but cannot work (no Authlib, an unreadable users file) stops
the app with a message and never falls back to ``none``. The users file is re-read when it
changes, and a session ends when its entry is removed or its password changed.

Roles: security (alerts), engineering (efficiency), finance (usage and cost), operations
(pipeline health), admin (all of them). A viewer limited to some tenants sees only their data,
and no fleet-wide page (pipeline health shows every tenant's traffic and dead letters).

>>> Viewer("ops", frozenset({"finance"}), ("acme",)).can("finance")
True
>>> Viewer("ops", frozenset({"finance"})).can("security")
False
>>> Viewer("root", frozenset({"admin"})).can("security")
True
>>> Viewer("root", frozenset({"admin"}), ("acme",)).can("operations")  # fleet-wide
False
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Final, NoReturn

import streamlit as st

import data
import users
from users import ADMIN, ROLES, UserEntry, UsersFileError

__all__ = ["LOCAL_OPERATOR", "ROLES", "Viewer", "auth_mode", "current_viewer", "require",
           "sidebar_identity", "sign_in"]

logger = logging.getLogger(__name__)

FLEET_WIDE: Final = frozenset({"operations"})
"""Roles whose pages show every tenant's data: only for viewers not limited to some tenants."""
SESSION_KEY: Final = "computewatch_viewer"
_SIGNED_IN_KEY: Final = "computewatch_signed_in"  # (name, password hash) of the users-file entry
_MARKDOWN: Final = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


@dataclass(frozen=True, slots=True)
class Viewer:
    """One person using the dashboard.

    ``tenants`` is None for "all tenants", else the only tenants whose data they may see.
    ``signed_in`` is False only for the open mode's local operator.
    """

    name: str
    roles: frozenset[str]
    tenants: tuple[str, ...] | None = None
    signed_in: bool = False

    def can(self, role: str) -> bool:
        """True if this viewer may open ``role``'s pages."""
        if self.tenants is not None and role in FLEET_WIDE:
            return False
        return ADMIN in self.roles or role in self.roles


LOCAL_OPERATOR: Final = Viewer("local operator", frozenset(ROLES))


class _Throttle(users.LoginThrottle):
    """The process-wide :class:`users.LoginThrottle`, safe across session threads."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


@st.cache_resource(show_spinner=False)
def _throttle() -> _Throttle:
    return _Throttle()


# -- which method -------------------------------------------------------------------------------

def auth_mode() -> str:
    """``oidc``, ``users`` or ``none``: how this dashboard signs people in."""
    settings = data.settings()
    if settings.dashboard_auth not in (None, "auto"):
        return settings.dashboard_auth
    if _oidc_configured():
        return "oidc"
    return "users" if settings.dashboard_users_file is not None else "none"


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml (StreamlitSecretNotFoundError)
        return False


def _users_or_stop() -> dict[str, UserEntry]:
    path = data.settings().dashboard_users_file
    if path is None:
        return {}
    try:
        return users.load_users(path)
    except UsersFileError as exc:
        logger.error("dashboard sign-in unavailable: %s", exc)
        _stop(f"Sign-in is unavailable: {exc}")


# -- the session's viewer -----------------------------------------------------------------------

def sign_in() -> Viewer:
    """This session's viewer; shows the sign-in screen and stops the run when there is none.

    The app calls it before building the navigation, so no page runs for a stranger.
    """
    mode = auth_mode()
    if mode == "none":
        viewer = LOCAL_OPERATOR
    elif mode == "oidc":
        viewer = _oidc_viewer()
    else:
        viewer = _form_viewer()
    st.session_state[SESSION_KEY] = viewer
    return viewer


def current_viewer() -> Viewer:
    """The viewer :func:`sign_in` established for this session (a page stops without one)."""
    viewer = st.session_state.get(SESSION_KEY)
    if not isinstance(viewer, Viewer):
        st.stop()
    return viewer


def require(role: str) -> Viewer:
    """The current viewer, or stop the page with a message if they lack ``role``."""
    viewer = current_viewer()
    if not viewer.can(role):
        st.error(f"This page is for the {role} role; ask an administrator for access.")
        st.stop()
    return viewer


def _viewer(entry: UserEntry) -> Viewer:
    return Viewer(entry.name, entry.roles, entry.tenants, signed_in=True)


def _form_viewer() -> Viewer:
    everyone = _users_or_stop()
    signed = st.session_state.get(_SIGNED_IN_KEY)
    if isinstance(signed, tuple):
        entry = everyone.get(signed[0])
        if entry is not None and entry.password_hash and entry.password_hash == signed[1]:
            return _viewer(entry)
        del st.session_state[_SIGNED_IN_KEY]  # removed from the file, or a new password
    _sign_in_form(everyone)
    st.stop()


def _sign_in_form(everyone: dict[str, UserEntry]) -> None:
    st.title("computewatch")
    st.caption("Sign in to see alerts, efficiency and usage.")
    with st.form("sign_in", clear_on_submit=True):
        st.text_input("User name", key="sign_in_name", autocomplete="username")
        st.text_input("Password", type="password", key="sign_in_password",
                      autocomplete="current-password")
        st.form_submit_button("Sign in", type="primary", on_click=_attempt, args=(everyone,))
    refusal = st.session_state.pop("sign_in_refused", None)
    if refusal:
        st.error(refusal)


def _attempt(everyone: dict[str, UserEntry]) -> None:
    """Form callback: check the password, then forget it (the next run signs in or refuses)."""
    state = st.session_state
    name, password = str(state["sign_in_name"]).strip(), str(state["sign_in_password"])
    state["sign_in_password"] = ""
    throttle, now = _throttle(), time.monotonic()
    with throttle.lock:
        wait = throttle.retry_after(name, now)
    if wait > 0:
        state["sign_in_refused"] = f"Too many failed attempts; try again in {math.ceil(wait)} s."
        return
    entry = users.authenticate(everyone, name, password)
    with throttle.lock:
        if entry is None:
            throttle.failed(name, now)
        else:
            throttle.succeeded(name)
    if entry is None:
        known = f"user {name!r}" if name in everyone else "an unknown user name"
        logger.warning("dashboard sign-in refused for %s", known)
        state["sign_in_refused"] = "Unknown user name or wrong password."
        return
    logger.info("dashboard sign-in: %s", entry.name)
    state[_SIGNED_IN_KEY] = (entry.name, entry.password_hash)


def _oidc_viewer() -> Viewer:
    if not _oidc_configured():
        _stop("COMPUTEWATCH_DASHBOARD_AUTH=oidc, but .streamlit/secrets.toml has no [auth] "
              "section; see the README's Security section.")
    if not st.user.get("is_logged_in"):
        st.title("computewatch")
        if importlib.util.find_spec("authlib") is None:
            _stop('Sign-in with OIDC needs Authlib: `pip install "streamlit[auth]"`.')
        st.caption("Sign in with your organisation's account.")
        st.button("Sign in", type="primary", on_click=st.login, key="oidc_sign_in")
        st.stop()
    identity = str(st.user.get("email") or "")
    entry = _users_or_stop().get(identity)
    if entry is None or st.user.get("email_verified") is False:
        logger.warning("dashboard OIDC identity without access: %r", identity)
        st.error(f"You are signed in as {_escape(identity or 'an account without e-mail')}, "
                 "which has no access to computewatch. Ask an administrator to add it to the "
                 "users file.")
        st.button("Sign out", on_click=st.logout, key="oidc_sign_out")
        st.stop()
    return _viewer(entry)


def _stop(message: str) -> NoReturn:
    st.error(message)
    st.stop()


# -- sidebar ------------------------------------------------------------------------------------

def sidebar_identity(viewer: Viewer) -> None:
    """Who is signed in (and a sign-out button), or a warning that nobody has to sign in."""
    if not viewer.signed_in:
        st.warning(
            f"**No sign-in.** Anyone who can open this address is the {viewer.name}, with "
            "every role. Set `COMPUTEWATCH_DASHBOARD_USERS_FILE` or configure OIDC (README, "
            "Security).", icon=":material/lock_open:")
        return
    roles = ", ".join(sorted(viewer.roles))
    scope = "all tenants" if viewer.tenants is None else ", ".join(viewer.tenants)
    st.caption(f"Signed in as **{_escape(viewer.name)}** · {_escape(roles)} · "
               f"{_escape(scope)}")
    if st.button("Sign out", key="sign_out", icon=":material/logout:"):
        if auth_mode() == "oidc":
            st.logout()
        st.session_state.pop(_SIGNED_IN_KEY, None)
        st.session_state.pop(SESSION_KEY, None)
        st.rerun()


def _escape(text: str) -> str:
    """``text`` shown literally in Streamlit markdown."""
    return _MARKDOWN.sub(r"\\\1", text)
