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
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseSettings

__all__ = [
    "StorageConfigError",
    "chdb_path",
    "connect",
    "describe_url",
    "is_embedded",
    "quote_database",
    "snapshot_copy",
]

logger = logging.getLogger(__name__)

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_MUTABLE_SUFFIXES: Final = (".txt", ".sql", ".log", ".json")
_SNAPSHOT_SKIP: Final = shutil.ignore_patterns("status", "*.lock", "tmp_*", "tmp")


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


def quote_database(name: str) -> str:
    """A database name checked to be a plain identifier and back-quoted for DDL."""
    if not _IDENTIFIER.match(name):
        raise StorageConfigError(f"database name must match {_IDENTIFIER.pattern}: {name!r}")
    return f"`{name}`"


def connect(settings: ClickHouseSettings, *, create_database: bool = False) -> Client:
    """A clickhouse-connect client whose default database is ``settings.database``.

    Parameters
    ----------
    settings
        ``url`` is ``chdb://path`` (embedded engine, directory created if missing) or
        ``http(s)://host:port``; ``username``/``password`` apply to servers only.
    create_database
        Run ``CREATE DATABASE IF NOT EXISTS`` first (what ``migrate`` needs).

    Returns
    -------
    Client
        Datetimes come back timezone-aware (UTC).
    """
    quoted = quote_database(settings.database)
    if is_embedded(settings.url):
        client = _embedded_client(settings.url)
    else:
        client = _server_client(settings)
    try:
        if create_database:
            client.command(f"CREATE DATABASE IF NOT EXISTS {quoted}")
        client.database = settings.database
    except Exception:
        client.close()
        raise
    logger.debug("connected to %s database %s", describe_url(settings.url), settings.database)
    return client


def _embedded_client(url: str) -> Client:
    path = chdb_path(url)
    if path != ":memory:":
        Path(path).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(interface="chdb", path=path, tz_mode="aware")


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
    return clickhouse_connect.get_client(**kwargs)


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
