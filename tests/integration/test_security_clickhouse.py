"""ClickHouse credentials and the dashboard's read-only user.

- The password comes from the environment or a secret file, reaches a server only in the HTTP
  ``Authorization`` header, and is in no log line, error or URL (embedded engine and a fake
  server that refuses it, as a real one refuses a wrong password).
- The read-only user's statements (``schemas/clickhouse/roles/``) parse as single statements on
  the engine's own parser whatever the password holds, take names only as checked identifiers,
  and the setting they give (``readonly = 2``) lets every dashboard query run and refuses writes.
  The embedded engine has no users (``CREATE USER`` is refused there), so the statements
  themselves are run against a server only.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import ClickHouseSettings, Settings
from pipeline.storage import connect, migrate_database
from pipeline.storage.client import (
    StorageConfigError,
    create_dashboard_user,
    dashboard_user_statements,
    quote_database,
)

SECRET = "Zq9-ch-s3cret-'\"`\\;--"
HOSTILE_PASSWORDS = [
    SECRET,
    "x'); DROP USER default; --",
    "pw' SETTINGS readonly = 0 --",
    "{password:String}",
    "\\' OR 1=1",
    "line\nbreak\ttab",
    "ünïcødé 😀",
    "a" * 512,
]
HOSTILE_NAMES = ["", "a b", "x`; GRANT ALL ON *.* TO x; --", "1starts_with_digit", "ümlaut",
                 "a" * 129, "default\n", "db.table", "`quoted`"]


def secret_leaks(text: str, secret: str = SECRET) -> bool:
    """True if the secret, or its base64 in a Basic auth header, is in ``text``."""
    encoded = base64.b64encode(f"viewer:{secret}".encode()).decode()
    return secret in text or encoded in text


# -- credentials --------------------------------------------------------------------------------

def test_connect_migrate_and_the_cli_never_log_the_password(
    chdb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_file = tmp_path / "clickhouse_password"
    secret_file.write_text(SECRET + "\n")
    database = f"cw_sec_{tmp_path.name[-8:].replace('-', '_')}"
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_URL", f"chdb://{chdb_path}")
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_DATABASE", database)
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_USERNAME", "viewer")
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_PASSWORD_FILE", str(secret_file))
    caplog.set_level(logging.DEBUG)
    settings = Settings()
    assert settings.clickhouse.password.get_secret_value() == SECRET
    try:
        migrate_database(settings)
        client = connect(settings.clickhouse)
        client.close()
        result = CliRunner().invoke(app, ["-v", "migrate"])
        assert result.exit_code == 0, result.output
    finally:
        client = connect(settings.clickhouse)
        client.command(f"DROP DATABASE IF EXISTS {quote_database(database)}")
        client.close()
    logged = caplog.text + " ".join(repr(r.args) for r in caplog.records)
    assert "applying migration" in logged, "the migration logs were not captured"
    assert not secret_leaks(logged) and not secret_leaks(result.output)
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert SECRET not in settings.model_dump_json()


class _RefusingServer(http.server.ThreadingHTTPServer):
    """Answers every request as ClickHouse answers a wrong password, and records the requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _Refuse)


class _Refuse(http.server.BaseHTTPRequestHandler):
    server: _RefusingServer
    MESSAGE = (b"Code: 516. DB::Exception: viewer: Authentication failed: password is "
               b"incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)")

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.path, dict(self.headers), body))
        self.send_response(500)
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.send_header("Content-Length", str(len(self.MESSAGE)))
        self.end_headers()
        self.wfile.write(self.MESSAGE)

    do_GET = do_POST = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[_RefusingServer]:
    server = _RefusingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("in_url", [False, True], ids=["settings", "url"])
def test_a_server_password_travels_in_the_authorization_header_only(
    refusing_server: _RefusingServer, caplog: pytest.LogCaptureFixture, in_url: bool
) -> None:
    port = refusing_server.server_address[1]
    if in_url:  # credentials in the URL itself: describe_url keeps them out of messages
        secret = "Zq9-url-s3cret"
        ch = ClickHouseSettings(url=f"http://viewer:{secret}@127.0.0.1:{port}")
    else:
        secret = SECRET
        ch = ClickHouseSettings(url=f"http://127.0.0.1:{port}", username="viewer",
                                password=SECRET)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED") as refused:
        connect(ch)
    [(path, headers, body)] = refusing_server.requests[:1]
    assert secret not in path and secret.encode() not in body
    expected = base64.b64encode(f"viewer:{secret}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"
    text = str(refused.value) + caplog.text + repr(refused.value.args)
    assert "127.0.0.1" in text and not secret_leaks(text, secret)


# -- the dashboard's read-only user -------------------------------------------------------------

def formatted(client: Client, sql: str) -> str:
    """The engine's own parse of ``sql`` (one statement; several raise) printed back."""
    return str(client.query("SELECT formatQuery({q:String})", parameters={"q": sql})
               .result_rows[0][0])


@pytest.mark.parametrize("triage", [False, True], ids=["read-only", "with-triage"])
def test_user_statements_are_single_statements_with_the_password_as_a_parameter(
    clickhouse_client: Client, triage: bool
) -> None:
    for password in HOSTILE_PASSWORDS:
        statements = dashboard_user_statements("cw_dashboard", password, "computewatch",
                                               triage=triage)
        for sql, params in statements:
            assert password not in sql.replace("{password:String}", "")
            text = formatted(clickhouse_client, sql)
            assert "`cw_dashboard`" in sql and "cw_dashboard" in text
            if params:
                assert params == {"password": password}
                assert "{password:String}" in text
                [[bound]] = clickhouse_client.query("SELECT {password:String}",
                                                    parameters=params).result_rows
                assert bound == password, "the parameter reaches the server byte for byte"
    kinds = [" ".join(formatted(clickhouse_client, sql).split()[:2]) for sql, _ in statements]
    expected = ["CREATE USER", "ALTER USER", "REVOKE ALL", "GRANT SELECT"]
    assert kinds == expected + (["ALTER USER", "GRANT INSERT"] if triage else [])
    texts = [formatted(clickhouse_client, sql) for sql, _ in statements]
    assert "readonly = 2" in texts[1] and "GRANT SELECT ON computewatch.* TO cw_dashboard" in texts
    if triage:
        assert "GRANT INSERT ON computewatch.alert_triage TO cw_dashboard" in texts


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_user_and_database_names_must_be_plain_identifiers(name: str) -> None:
    with pytest.raises(StorageConfigError, match="user name must match"):
        dashboard_user_statements(name, "pw", "computewatch")
    with pytest.raises(StorageConfigError, match="database name must match"):
        dashboard_user_statements("cw_dashboard", "pw", name)


def test_an_empty_password_is_refused() -> None:
    with pytest.raises(StorageConfigError, match="non-empty password"):
        dashboard_user_statements("cw_dashboard", "", "computewatch")


def test_the_embedded_engine_has_no_users(clickhouse_client: Client) -> None:
    """Why the statements are not run here: chDB refuses CREATE USER (its default user may not)."""
    sql, params = dashboard_user_statements("cw_dashboard", "pw", "computewatch")[0]
    with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
        clickhouse_client.command(sql, parameters=params)
    with pytest.raises(StorageConfigError, match="embedded engine"):
        create_dashboard_user(ClickHouseSettings(url="chdb://memory"), "cw_dashboard", "pw")


class _RecordingClient:
    """Stands in for an HTTP client of a server: records what would be sent."""

    def __init__(self) -> None:
        self.form_encode_query_params = False
        self.commands: list[tuple[str, dict[str, Any], bool]] = []
        self.closed = False

    def command(self, sql: str, parameters: dict[str, Any]) -> None:
        self.commands.append((sql, parameters, self.form_encode_query_params))

    def close(self) -> None:
        self.closed = True


def test_creating_the_user_sends_each_statement_with_the_password_in_the_body() -> None:
    recorder = _RecordingClient()
    admin = ClickHouseSettings(url="http://ch.example:8123", username="admin", password="root")
    create_dashboard_user(admin, "cw_dashboard", SECRET, triage=True,
                          connector=lambda settings: recorder)  # type: ignore[arg-type,return-value]
    expected = dashboard_user_statements("cw_dashboard", SECRET, "computewatch", triage=True)
    assert [(sql, params) for sql, params, _ in recorder.commands] == expected
    assert all(form for _, _, form in recorder.commands), "parameters in a URL could be logged"
    assert recorder.closed


READONLY_CHECK = r"""
import json, sys
from datetime import UTC, date, datetime, timedelta
from pipeline.config import ClickHouseSettings, Settings
from pipeline.storage import check_schema, connect, migrate, record_triage, usage_report
from pipeline.storage import queries as q

settings = Settings(clickhouse=ClickHouseSettings(url="chdb://memory", database="cw_ro"))
client = connect(settings.clickhouse, create_database=True)
migrate(client, settings.clickhouse)
start = datetime(2026, 3, 1, tzinfo=UTC)
end, day = start + timedelta(days=1), date(2026, 3, 1)
dashboard = {
    "alerts_feed": q.alerts_feed(start, end, tenants=["acme"], statuses=["new"]),
    "alert_counts": q.alert_counts(start, end),
    "alert_events": q.alert_events("api_key", "k", start, end),
    "alert_triage_history": q.alert_triage_history("00000000-0000-4000-8000-000000000000"),
    "efficiency_series": q.efficiency_series(start, end, by="model", tenants=["acme"]),
    "efficiency_breakdown": q.efficiency_breakdown(start, end, by="route"),
    "confidence_vs_compute": q.confidence_vs_compute(start, end),
    "usage": q.usage(day, day + timedelta(days=1), group_by="api_key"),
    "usage_by_hour": q.usage_by_hour(start, end),
    "usage_from_events": q.usage_from_events(day, day + timedelta(days=1)),
    "events_per_minute": q.events_per_minute(start, end),
    "pipeline_status": q.pipeline_status(),
    "dead_letters_by_reason": q.dead_letters_by_reason(start, end),
}
out = {}
try:
    client.query(*dashboard["alerts_feed"], settings={"readonly": 1})
    out["readonly_1_alerts_feed"] = "ran"
except Exception as exc:
    out["readonly_1_alerts_feed"] = str(exc).splitlines()[0]
client.command("SET readonly = 2")
out["readonly"] = client.query("SELECT getSetting('readonly')").result_rows[0][0]
out["queries"] = {name: len(client.query(sql, parameters=params).result_rows)
                  for name, (sql, params) in dashboard.items()}
out["schema"] = check_schema(client, "cw_ro")
out["usage_report"] = usage_report(client, settings, day, day + timedelta(days=1)).num_rows
for name, write in (("triage", lambda: record_triage(
        client, "00000000-0000-4000-8000-000000000000", "resolved", "eve", "")),
        ("drop", lambda: client.command("DROP TABLE events"))):
    try:
        write()
        out[name] = "allowed"
    except Exception as exc:
        out[name] = str(exc).splitlines()[0]
print(json.dumps(out))
"""


def test_readonly_2_runs_every_dashboard_query_and_refuses_writes() -> None:
    """``SETTINGS readonly = 2`` (what the user gets) on an engine of its own, in a process of
    its own (one engine path per process): every query builder the dashboard uses runs, a
    triage insert and DDL are refused; ``readonly = 1`` would break the alerts feed."""
    done = subprocess.run([sys.executable, "-c", READONLY_CHECK], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "Cannot modify 'join_use_nulls' setting in readonly mode" in out[
        "readonly_1_alerts_feed"]
    assert out["readonly"] == 2
    assert set(out["queries"]) >= {"alerts_feed", "usage", "pipeline_status"}
    assert out["schema"] >= 4 and out["usage_report"] == 0
    assert "readonly mode" in out["triage"] and "READONLY" in out["triage"]
    assert "readonly mode" in out["drop"]
