"""Dashboard sign-in (issue 9): the users file with hashed passwords, OIDC identities, roles that
decide the pages and tenants that scope the data, and the open mode's warning.

The app runs under AppTest on the seeded store; ``COMPUTEWATCH_DASHBOARD_USERS_FILE`` points at
a file written here with hashes from :mod:`users`. Expected numbers come from
``pipeline.storage.usage`` and the raw tables, not from the dashboard.
"""

from __future__ import annotations

import doctest
import importlib
import io
import json
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import ModuleType

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pipeline.storage import usage_report
from tests.dashboard.harness import APP, DASHBOARDS, SeededStore, metric, page_links, texts
from tests.dashboard.seeding import PERIOD

ALERTS, EFFICIENCY, USAGE, HEALTH = (f"app_pages/{p}.py" for p in
                                     ("alerts", "efficiency", "usage", "health"))
TENANT = "tenant-03"
PASSWORDS = {"fin": "fin-passphrase-1", "sec": "sec-passphrase-1", "eng": "eng-passphrase-1",
             "root": "root-passphrase-1", "sec3": "sec3-passphrase-1"}
OIDC_USER = "ana@example.com"
OIDC_SECRETS = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback",
                         "cookie_secret": "x" * 32, "client_id": "computewatch",
                         "client_secret": "not-used-here",
                         "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}}


@pytest.fixture(scope="module")
def users() -> ModuleType:
    """The dashboard's users module, imported by bare name as the app imports it."""
    sys.path.insert(0, str(DASHBOARDS))
    try:
        return importlib.import_module("users")
    finally:
        sys.path.remove(str(DASHBOARDS))


@pytest.fixture(scope="module")
def users_file(users: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TOML users file: one user per role, a tenant-scoped finance and security user, and an
    OIDC identity (no password)."""
    path = tmp_path_factory.mktemp("users") / "users.toml"
    entries = [("fin", {"finance"}, (TENANT,)), ("sec", {"security"}, None),
               ("eng", {"engineering"}, None), ("root", {"admin"}, None),
               ("sec3", {"security"}, (TENANT,))]
    for name, roles, tenants in entries:
        users.add_user(path, users.UserEntry(name, frozenset(roles), tenants,
                                             users.hash_password(PASSWORDS[name])))
    users.add_user(path, users.UserEntry(OIDC_USER, frozenset({"security"})))
    return path


@contextmanager
def configured(**env: str) -> Iterator[None]:
    """The app with these ``COMPUTEWATCH_*`` settings (fresh settings, client and throttle)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        st.cache_resource.clear()
        st.cache_data.clear()
        try:
            yield
        finally:
            mp.undo()
            st.cache_resource.clear()
            st.cache_data.clear()


@pytest.fixture
def with_users(store: SeededStore, users_file: Path) -> Iterator[Path]:
    with configured(COMPUTEWATCH_DASHBOARD_USERS_FILE=str(users_file)):
        yield users_file


def app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=120)


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(password)
    [button] = [b for b in at.button if b.label == "Sign in"]
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shows_sign_in_form_only(at: AppTest) -> bool:
    keys = {w.key for w in at.text_input}
    return (keys == {"sign_in_name", "sign_in_password"} and page_links(at) == []
            and not at.metric and not at.dataframe and not at.sidebar.children)


def dollars(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


# -- the users file -----------------------------------------------------------------------------

def test_passwords_are_salted_scrypt_hashes(users: ModuleType, users_file: Path) -> None:
    text = users_file.read_text()
    assert all(password not in text for password in PASSWORDS.values())
    entries = tomllib.loads(text)["users"]
    hashes = [e["password"] for e in entries if "password" in e]
    assert len(hashes) == len(PASSWORDS) and all(h.startswith("scrypt$16384$8$1$") for h in hashes)
    assert len({h.split("$")[4] for h in hashes}) == len(hashes), "one salt per user"
    assert users.hash_password("same words") != users.hash_password("same words")
    assert users_file.stat().st_mode & 0o077 == 0, "the users file is private to its owner"
    loaded = users.load_users(users_file)
    assert loaded["fin"].tenants == (TENANT,) and loaded["fin"].roles == {"finance"}
    assert loaded[OIDC_USER].password_hash is None
    assert users.authenticate(loaded, "fin", PASSWORDS["fin"]) == loaded["fin"]
    assert users.authenticate(loaded, "fin", PASSWORDS["sec"]) is None
    assert users.authenticate(loaded, OIDC_USER, "") is None, "no password, no form sign-in"
    assert users.authenticate(loaded, "nobody", PASSWORDS["fin"]) is None


@pytest.mark.parametrize(("content", "message"), [
    ('[[users]]\nname = "x"\nroles = ["root"]\n', "unknown roles"),
    ('[[users]]\nname = "x"\nroles = ["finance"]\npassword = "hunter2"\n', "must be a hash"),
    ('[[users]]\nname = "x"\nroles = []\n', "non-empty list of role names"),
    ('[[users]]\nname = "x"\nroles = ["finance"]\ntenants = []\n', "omit it for all"),
    ('[[users]]\nname = "x"\nroles = ["finance"]\n[[users]]\nname = "x"\nroles = ["admin"]\n',
     "listed twice"),
    ("users = 3\n", "expected a list"),
    ("[[users]\n", "not valid toml"),
])
def test_a_broken_users_file_is_refused_with_a_reason(
    users: ModuleType, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "users.toml"
    path.write_text(content)
    with pytest.raises(users.UsersFileError, match=message) as info:
        users.load_users(path)
    assert "hunter2" not in str(info.value)


def test_the_command_line_adds_users_to_toml_and_json(
    users: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("users.toml", "users.json"):
        path = tmp_path / name
        monkeypatch.setattr(sys, "stdin", io.StringIO("a long passphrase\n"))
        assert users.main(["add", "fin", "--role", "finance", "--tenant", "acme", "--tenant",
                           "globex", "--file", str(path), "--password-stdin"]) == 0
        assert users.main(["add", "ana@example.com", "--role", "admin", "--oidc",
                           "--file", str(path)]) == 0
        loaded = users.load_users(path)
        assert loaded["fin"].tenants == ("acme", "globex")
        assert users.authenticate(loaded, "fin", "a long passphrase") == loaded["fin"]
        assert loaded["ana@example.com"].roles == {"admin"}
        with pytest.raises(SystemExit, match="exists already"):
            users.main(["add", "fin", "--role", "finance", "--file", str(path), "--oidc"])
    json.loads((tmp_path / "users.json").read_text())
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    with pytest.raises(SystemExit, match="at least 8"):
        users.main(["hash", "--password-stdin"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long passphrase\n"))
    capsys.readouterr()
    assert users.main(["hash", "--password-stdin"]) == 0
    printed = capsys.readouterr().out.strip()
    assert users.verify_password("a long passphrase", printed)


def test_five_wrong_passwords_lock_a_name_for_a_minute(users: ModuleType) -> None:
    throttle = users.LoginThrottle()
    for second in range(5):
        assert throttle.retry_after("fin", float(second)) == 0
        throttle.failed("fin", float(second))
    assert throttle.retry_after("fin", 5.0) == pytest.approx(59.0)
    assert throttle.retry_after("sec", 5.0) == 0, "other names are not affected"
    assert throttle.retry_after("fin", 64.0) == 0
    throttle.succeeded("fin")
    assert throttle.retry_after("fin", 5.0) == 0


@pytest.mark.parametrize("name", ["users", "access"])
def test_doctests(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DASHBOARDS))
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- the sign-in form ---------------------------------------------------------------------------

@pytest.mark.parametrize("page", [None, USAGE, ALERTS, HEALTH])
def test_a_stranger_sees_only_the_sign_in_form(with_users: Path, page: str | None) -> None:
    at = app()
    if page is not None:
        at.switch_page(page)
    at.run()
    assert not at.exception
    assert shows_sign_in_form_only(at)
    assert [t.value for t in at.title] == ["computewatch"]


def test_a_wrong_password_or_an_unknown_name_is_refused_alike(with_users: Path) -> None:
    at = sign_in(app().run(), "fin", PASSWORDS["sec"])
    assert texts(at, "error") == ["Unknown user name or wrong password."]
    assert shows_sign_in_form_only(at)
    at = sign_in(at, "mallory", PASSWORDS["fin"])
    assert texts(at, "error") == ["Unknown user name or wrong password."]
    assert shows_sign_in_form_only(at)
    assert at.session_state["sign_in_password"] == "", "the password is not kept"


def test_repeated_failures_lock_the_name_even_for_the_right_password(with_users: Path) -> None:
    at = app().run()
    for _ in range(5):
        sign_in(at, "eng", "guess-" + PASSWORDS["sec"])
    sign_in(at, "eng", PASSWORDS["eng"])
    assert texts(at, "error")[0].startswith("Too many failed attempts; try again in")
    assert shows_sign_in_form_only(at)
    sign_in(at, "root", PASSWORDS["root"])
    assert page_links(at), "another name is not locked"


def test_a_finance_user_of_one_tenant_sees_usage_of_that_tenant_only(
    store: SeededStore, with_users: Path
) -> None:
    at = sign_in(app().run(), "fin", PASSWORDS["fin"])
    assert page_links(at) == ["Usage & cost", "Budgets"]
    assert any("Signed in as **fin** · finance · tenant\\-03" in c for c in texts(at, "caption"))
    for forbidden in (ALERTS, EFFICIENCY, HEALTH):
        with pytest.raises(ValueError):
            at.switch_page(forbidden)
    at.switch_page(USAGE).run()
    assert not at.exception
    report = usage_report(store.client, store.settings, *PERIOD, TENANT).to_pylist()
    assert metric(at, "Cost") == dollars(report[0]["cost_usd"])
    assert at.multiselect(key="usage_tenants").options == [TENANT]
    assert set(at.dataframe[0].value["tenant_id"]) == {TENANT, "Total"}


def test_a_security_user_sees_alerts_and_triages_under_their_name(
    store: SeededStore, with_users: Path
) -> None:
    at = sign_in(app().run(), "sec", PASSWORDS["sec"])
    assert page_links(at) == ["Alerts"]
    with pytest.raises(ValueError):
        at.switch_page(USAGE)
    at.switch_page(ALERTS).run()
    assert not at.exception and at.title[0].value == "Alerts"
    actor = at.text_input(key="triage_actor")
    assert (actor.value, actor.disabled) == ("sec", True)
    alert_id = at.selectbox(key="alert_choice").value
    at.text_area(key="triage_note").input("seen")
    [save] = [b for b in at.button if b.label == "Save"]
    save.click().run()
    assert "Alert marked acknowledged." in texts(at, "success")
    [[actor_stored]] = store.client.query(
        "SELECT actor FROM alert_triage WHERE alert_id = {id:UUID}", parameters={"id": alert_id}
    ).result_rows
    assert actor_stored == "sec"


def test_a_security_user_of_one_tenant_sees_only_its_alerts(
    store: SeededStore, with_users: Path
) -> None:
    keys = {k for (k,) in store.client.query(
        "SELECT DISTINCT api_key_id FROM events WHERE tenant_id = {t:String}",
        parameters={"t": TENANT}).result_rows}
    at = sign_in(app().run(), "sec3", PASSWORDS["sec3"])
    at.switch_page(ALERTS).run()
    assert not at.exception
    [statuses] = [w for w in at.multiselect if w.label == "Status"]
    statuses.set_value([]).run()  # every status
    feed = at.dataframe[0].value if at.dataframe else None
    expected = store.scalar(
        "SELECT count() FROM alerts FINAL WHERE (entity_type = 'tenant' AND entity_id = {t:String})"
        " OR (entity_type = 'api_key' AND entity_id IN {keys:Array(String)})",
        t=TENANT, keys=sorted(keys))
    shown = 0 if feed is None else len(feed)
    assert shown == expected
    if feed is not None:
        assert set(feed["entity_id"]) <= keys | {TENANT}
    assert [w.options for w in at.multiselect if w.label == "Tenant"] == [[TENANT]]


def test_an_admin_sees_every_page(with_users: Path) -> None:
    at = sign_in(app().run(), "root", PASSWORDS["root"])
    assert page_links(at) == ["Alerts", "Efficiency", "Allocation", "Usage & cost", "Budgets",
                              "Pipeline health"]
    at.switch_page(HEALTH).run()
    assert not at.exception and at.title[0].value == "Pipeline health"


def test_removing_a_user_ends_their_session(
    users: ModuleType, users_file: Path, store: SeededStore, tmp_path: Path
) -> None:
    path = tmp_path / "users.toml"
    path.write_bytes(users_file.read_bytes())
    with configured(COMPUTEWATCH_DASHBOARD_USERS_FILE=str(path)):
        at = sign_in(app().run(), "eng", PASSWORDS["eng"])
        assert page_links(at) == ["Efficiency", "Allocation"]
        rewritten = tmp_path / "new.toml"
        for entry in users.load_users(path).values():
            if entry.name != "eng":
                users.add_user(rewritten, entry)
        rewritten.replace(path)
        at.run()
        assert shows_sign_in_form_only(at)


def test_an_unreadable_users_file_stops_the_app_instead_of_opening_it(
    store: SeededStore, tmp_path: Path
) -> None:
    broken = tmp_path / "users.toml"
    broken.write_text("[[users]\n")
    with configured(COMPUTEWATCH_DASHBOARD_USERS_FILE=str(broken)):
        at = app().run()
    assert texts(at, "error")[0].startswith("Sign-in is unavailable:")
    assert page_links(at) == [] and not at.text_input and not at.sidebar.children


# -- OIDC and the open mode ---------------------------------------------------------------------

def oidc_app(user: dict[str, object]) -> AppTest:
    at = app()
    at.secrets.update(OIDC_SECRETS)
    at.user = user
    return at.run()


def test_an_oidc_identity_gets_the_roles_the_users_file_gives_it(with_users: Path) -> None:
    at = oidc_app({"is_logged_in": True, "email": OIDC_USER, "email_verified": True})
    assert not at.exception
    assert page_links(at) == ["Alerts"]
    assert any(f"Signed in as **{OIDC_USER.replace('.', chr(92) + '.')}**" in c
               for c in texts(at, "caption"))


@pytest.mark.parametrize("user", [
    {"is_logged_in": True, "email": "eve@example.com"},
    {"is_logged_in": True, "email": OIDC_USER, "email_verified": False},
])
def test_an_oidc_identity_the_users_file_does_not_list_sees_nothing(
    with_users: Path, user: dict[str, object]
) -> None:
    at = oidc_app(user)
    assert "which has no access to computewatch" in texts(at, "error")[0]
    assert page_links(at) == [] and not at.sidebar.children


def test_signed_out_oidc_never_falls_back_to_the_open_mode(with_users: Path) -> None:
    at = oidc_app({"is_logged_in": False})
    assert page_links(at) == [] and not at.sidebar.children
    errors, buttons = texts(at, "error"), [b.label for b in at.button]
    assert errors == ['Sign-in with OIDC needs Authlib: `pip install "streamlit[auth]"`.'] or (
        buttons == ["Sign in"])


def test_the_open_mode_says_so_in_the_sidebar(store: SeededStore) -> None:
    with configured():
        at = app().run()
    assert page_links(at) == ["Alerts", "Efficiency", "Allocation", "Usage & cost", "Budgets",
                              "Pipeline health"]
    [warning] = [str(w.value) for w in at.sidebar.warning]
    assert warning.startswith("**No sign-in.** Anyone who can open this address is the local "
                              "operator, with every role.")
