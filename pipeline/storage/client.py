"""One factory for ClickHouse clients: the embedded engine (``chdb://path``) or a server (``http(s)://``).

The embedded engine has rules a server does not (measured with chdb 4.4 / engine 26.9):

- one process hosts at most one engine *path* at a time; any number of clients may share it, and
  once every client on it is closed the process may open another path;
- a second process cannot open a path another process holds, not even read-only (the engine locks
  ``<path>/status``). :func:`snapshot_copy` gives another process a consistent point-in-time copy
  (hard links of the immutable parts) that it can open as its own path.

>>> describe_url("https://reader:s3cret@ch.example:8443/?x=1")
'https://ch.example:8443'
>>> chdb_path("chdb:///var/lib/cw") == "/var/lib/cw"
True

Credentials come from the settings (``COMPUTEWATCH_CLICKHOUSE_PASSWORD`` or ``..._PASSWORD_FILE``)
and leave their ``SecretStr`` only in :func:`_server_client`, for the HTTP ``Authorization``
header; logs name the server with :func:`describe_url`. :func:`create_dashboard_user` gives the
dashboard its own read-only user on a server (``schemas/clickhouse/roles/``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError
from pydantic import SecretStr

from pipeline.config import ClickHouseSettings
from pipeline.storage.errors import FILL_STORE_FIRST, StoreNotFound, StoreUnavailable

__all__ = [
    "ROLES_DIR",
    "StorageConfigError",
    "chdb_path",
    "connect",
    "create_dashboard_user",
    "dashboard_user_statements",
    "describe_url",
    "is_embedded",
    "quote_database",
    "quote_identifier",
    "snapshot_copy",
]

logger = logging.getLogger(__name__)

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_MUTABLE_SUFFIXES: Final = (".txt", ".sql", ".log", ".json")
_SNAPSHOT_SKIP: Final = shutil.ignore_patterns("status", "*.lock", "tmp_*", "tmp")
_LOCKED: Final = b"Cannot lock file"  # what chDB prints when another process holds the path
_REASON: Final = re.compile(r"\[Errno -?\d+\] ([^\"'(),]+)")  # "[Errno 111] Connection refused"
_stderr_lock: Final = threading.Lock()
ROLES_DIR: Final = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse" / "roles"


class StorageConfigError(ValueError):
    """The ClickHouse settings cannot describe a usable connection."""


def is_embedded(url: str) -> bool:
    """True for the embedded engine's ``chdb://`` URLs."""
    return url.startswith("chdb:")


def chdb_path(url: str) -> str:
    """The absolute directory of a ``chdb://`` URL (relative paths resolve against the cwd).

    ``chdb://./data/clickhouse`` and ``chdb:///abs/path`` both name a directory; ``chdb://memory``
    is the in-memory engine (returned as ``:memory:``).
    """
    if not is_embedded(url):
        raise StorageConfigError(f"not an embedded-engine URL: {describe_url(url)}")
    rest = url.split(":", 1)[1]
    rest = rest[2:] if rest.startswith("//") else rest
    rest = rest.split("?", 1)[0]
    if rest in ("", "memory", ":memory:"):
        return ":memory:"
    return os.path.abspath(os.path.expanduser(rest))


def describe_url(url: str) -> str:
    """The URL without credentials, path or query: safe to log."""
    if is_embedded(url):
        return url.split("?", 1)[0]
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def quote_identifier(name: str, what: str = "name") -> str:
    """``name`` checked to be a plain identifier and back-quoted, for statements that cannot
    take it as a parameter (database names in DDL, user names in GRANT).

    >>> quote_identifier("cw_dashboard", "user name")
    '`cw_dashboard`'
    >>> quote_identifier("x` TO admin --", "user name")
    Traceback (most recent call last):
    ...
    pipeline.storage.client.StorageConfigError: user name must match ...: 'x` TO admin --'
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):  # no trailing newline
        raise StorageConfigError(f"{what} must match {_IDENTIFIER.pattern}: {name!r}")
    return f"`{name}`"


def quote_database(name: str) -> str:
    """A database name checked to be a plain identifier and back-quoted for DDL."""
    return quote_identifier(name, "database name")


def connect(
    settings: ClickHouseSettings, *, create_database: bool = False, must_exist: bool = False
) -> Client:
    """A clickhouse-connect client whose default database is ``settings.database``.

    Parameters
    ----------
    settings
        ``url`` is ``chdb://path`` (embedded engine, directory created if missing) or
        ``http(s)://host:port``; ``username``/``password`` apply to servers only.
    create_database
        Run ``CREATE DATABASE IF NOT EXISTS`` first (what ``migrate`` needs).
    must_exist
        For readers: raise :class:`StoreNotFound` instead of creating a missing embedded store,
        and when the database does not exist.

    Returns
    -------
    Client
        Datetimes come back timezone-aware (UTC).

    Raises
    ------
    StoreUnavailable
        The server cannot be reached, or another process holds the embedded store.
    StoreNotFound
        With ``must_exist``: see there.
    """
    quoted = quote_database(settings.database)
    if is_embedded(settings.url):
        client = _embedded_client(settings.url, must_exist=must_exist)
    else:
        client = _server_client(settings)
    try:
        if create_database:
            client.command(f"CREATE DATABASE IF NOT EXISTS {quoted}")
        elif must_exist and not client.command(f"EXISTS DATABASE {quoted}"):
            raise StoreNotFound(
                f"database {settings.database} does not exist in {describe_url(settings.url)}: "
                + FILL_STORE_FIRST
            )
        client.database = settings.database
    except Exception:
        client.close()
        raise
    logger.debug("connected to %s database %s", describe_url(settings.url), settings.database)
    return client


def _embedded_client(url: str, *, must_exist: bool) -> Client:
    path = chdb_path(url)
    if path != ":memory:" and not Path(path).is_dir():
        if must_exist:
            raise StoreNotFound(
                f"no embedded store at {path} ({describe_url(url)}; name yours with "
                f"--clickhouse-url or COMPUTEWATCH_CLICKHOUSE_URL): {FILL_STORE_FIRST}"
            )
        Path(path).mkdir(parents=True)
        logger.info("created the embedded store %s", path)
    with tempfile.TemporaryFile() as native, _native_stderr_to(native):
        try:
            return clickhouse_connect.get_client(interface="chdb", path=path, tz_mode="aware")
        except ProgrammingError as exc:
            native.seek(0)
            if _LOCKED not in native.read():
                raise
            native.truncate(0)  # said here in one line instead
            raise StoreUnavailable(
                f"another process (another computewatch?) holds the embedded store {path}: stop"
                " it, or point both at a ClickHouse server (--clickhouse-url http://host:8123)"
            ) from exc


@contextmanager
def _native_stderr_to(sink: IO[bytes]) -> Iterator[None]:
    """File descriptor 2 into ``sink`` meanwhile (chDB's engine writes its failures there),
    then what ``sink`` holds back onto stderr: the caller may empty it to say it itself."""
    with _stderr_lock:  # one redirection at a time, or a thread could restore the wrong fd
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said = sink.read()
            if said:
                os.write(2, said)


def _unreachable(settings: ClickHouseSettings, exc: Exception) -> StoreUnavailable:
    found = _REASON.search(str(exc))
    reason = found.group(1).strip() if found else type(exc).__name__
    return StoreUnavailable(
        f"cannot reach ClickHouse at {describe_url(settings.url)} ({reason}): start it, or set"
        " --clickhouse-url or COMPUTEWATCH_CLICKHOUSE_URL"
    )


def _server_client(settings: ClickHouseSettings) -> Client:
    parts = urlsplit(settings.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StorageConfigError(
            "ClickHouse URL must be chdb://path or http(s)://host:port, got "
            + describe_url(settings.url)
        )
    secure = parts.scheme == "https"
    kwargs: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or (8443 if secure else 8123),
        "secure": secure,
        "username": parts.username or settings.username,
        "password": parts.password or settings.password.get_secret_value(),
        "tz_mode": "aware",
    }
    try:
        return clickhouse_connect.get_client(**kwargs)
    except OperationalError as exc:  # refused, unknown host, timed out
        raise _unreachable(settings, exc) from exc


Statement = tuple[str, dict[str, Any]]


def dashboard_user_statements(
    user: str, password: SecretStr | str, database: str, *, triage: bool = False
) -> list[Statement]:
    """The ``(sql, params)`` statements that create the dashboard's read-only ClickHouse user
    (or give it a new password), from ``schemas/clickhouse/roles/``.

    ``user`` and ``database`` must be plain identifiers (checked, then back-quoted: GRANT takes
    no parameters); the password travels only as the server-side parameter ``password``.
    ``triage`` adds ``triage_grant.sql`` (INSERT on ``alert_triage``, the dashboard's one write).

    >>> statements = dashboard_user_statements("cw_dashboard", "s3cret", "computewatch")
    >>> [" ".join(sql.split()[:2]) for sql, _ in statements]
    ['CREATE USER', 'ALTER USER', 'REVOKE ALL', 'GRANT SELECT']
    >>> any("s3cret" in sql for sql, _ in statements), statements[0][1]
    (False, {'password': 's3cret'})
    """
    from pipeline.storage.migrations import split_statements  # migrations imports this module

    secret = password.get_secret_value() if isinstance(password, SecretStr) else password
    if not secret:
        raise StorageConfigError("the dashboard's ClickHouse user needs a non-empty password")
    names = {"{user}": quote_identifier(user, "user name"), "{db}": quote_database(database)}
    statements: list[Statement] = []
    for file in ("readonly_user.sql", *(("triage_grant.sql",) if triage else ())):
        text = (ROLES_DIR / file).read_text(encoding="utf-8")
        for placeholder, quoted in names.items():
            text = text.replace(placeholder, quoted)
        for sql in split_statements(text):
            statements.append((sql, {"password": secret} if "{password:String}" in sql else {}))
    return statements


def create_dashboard_user(
    settings: ClickHouseSettings,
    user: str,
    password: SecretStr | str,
    *,
    triage: bool = False,
    connector: Callable[[ClickHouseSettings], Client] = connect,
) -> None:
    """Create (or rotate) the dashboard's read-only user on the server ``settings`` names,
    connected as ``settings.username`` (an administrator). Server mode only.

    Parameters travel form-encoded in the request body, so the new password is in no URL.
    """
    if is_embedded(settings.url):
        raise StorageConfigError(
            "the embedded engine (chdb://) has no users or grants: the dashboard's read-only "
            "user is for a ClickHouse server (http(s)://)"
        )
    statements = dashboard_user_statements(user, password, settings.database, triage=triage)
    client = connector(settings)
    try:
        if hasattr(client, "form_encode_query_params"):  # HTTP clients; default: URL params
            client.form_encode_query_params = True
        for sql, params in statements:
            client.command(sql, parameters=params)
    finally:
        client.close()
    logger.info("dashboard user %s may now read %s on %s%s", user, settings.database,
                describe_url(settings.url), " and record triage" if triage else "")


def snapshot_copy(source: str | Path, target: str | Path) -> Path:
    """Copy an embedded-engine directory held by another process, as hard links where possible.

    MergeTree parts are immutable once committed, so linking them gives a consistent snapshot
    that this process can open with ``chdb://<target>``: the running writer keeps its lock and
    its files. A part merged away during the copy is still covered by the merged part (the
    engine keeps outdated parts for minutes and ignores covered ones on load). Refresh by closing
    every client on the snapshot, deleting it and copying again.
    """
    source, target = Path(source), Path(target)
    if not (source / "metadata").is_dir():
        raise StorageConfigError(f"not an embedded ClickHouse directory: {source}")
    if target.exists():
        raise StorageConfigError(f"snapshot target already exists: {target}")

    def link_or_copy(src: str, dst: str) -> object:
        # Column data and marks are immutable: link them. Small files the engine may append to
        # or rewrite in place (dedup logs, metadata, counters) are copied.
        if not src.endswith(_MUTABLE_SUFFIXES) and "deduplication_logs" not in src:
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass
        return shutil.copy2(src, dst)

    shutil.copytree(
        source, target, symlinks=True, copy_function=link_or_copy, ignore=_SNAPSHOT_SKIP
    )
    return target
