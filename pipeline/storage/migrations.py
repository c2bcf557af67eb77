"""Versioned ClickHouse schema: ``schemas/clickhouse/NNN_name.sql`` applied in order, once.

Each file holds DDL statements separated by ``;`` with two placeholders: ``{db}`` (the
back-quoted database from settings) and ``{events_ttl_days}``. Applied versions are recorded in
``schema_migrations``; re-running is a no-op, and a database whose schema is newer than the files
this code knows is refused with :class:`SchemaTooNew` (never "downgraded" by accident).

>>> [m.version for m in discover()][:3]
[1, 2, 3]
>>> split_statements("CREATE TABLE a (x UInt8) ENGINE = Memory; -- note\\nSELECT 1;")
['CREATE TABLE a (x UInt8) ENGINE = Memory', 'SELECT 1']
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseSettings
from pipeline.storage.client import quote_database
from pipeline.storage.errors import FILL_STORE_FIRST

__all__ = [
    "SCHEMA_DIR",
    "MigrationError",
    "SchemaNotReady",
    "SchemaTooNew",
    "check_schema",
    "discover",
    "migrate",
    "schema_version",
    "split_statements",
]

logger = logging.getLogger(__name__)

SCHEMA_DIR: Final = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse"
TTL_TABLES: Final = {"events": "toDateTime(ts)", "metrics_1m": "window_start",
                     "dead_letters": "toDateTime(received_at)"}
_FILE_NAME: Final = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
_BOOKKEEPING: Final = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


class MigrationError(RuntimeError):
    """The migration files or the database's migration history are unusable."""


class SchemaTooNew(MigrationError):
    """The database was migrated by a newer computewatch than this one."""


class SchemaNotReady(MigrationError):
    """The database lacks migrations this code needs: run ``computewatch migrate``."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self, settings: ClickHouseSettings) -> list[str]:
        sql = self.text.replace("{db}", quote_database(settings.database))
        sql = sql.replace("{events_ttl_days}", str(int(settings.events_ttl_days)))
        return split_statements(sql)


def discover(schema_dir: Path = SCHEMA_DIR) -> list[Migration]:
    """The migration files in version order; raise on a duplicate or malformed name."""
    if not schema_dir.is_dir():
        raise MigrationError(f"schema directory not found: {schema_dir}")
    found: dict[int, Migration] = {}
    for path in sorted(schema_dir.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must be NNN_name.sql: {path.name}")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version}: {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Statements of a DDL file: ``--`` comments dropped, split on ``;`` at the end of a line."""
    lines = [line.split("--", 1)[0].rstrip() for line in sql.splitlines()]
    text = "\n".join(lines)
    parts = re.split(r";\s*(?:\n|$)", text)
    return [part.strip() for part in parts if part.strip()]


def schema_version(client: Client, database: str) -> int:
    """Highest applied migration version in ``database`` (0 when none or no bookkeeping table)."""
    exists = client.query(
        "SELECT count() FROM system.tables"
        " WHERE database = {db:String} AND name = 'schema_migrations'",
        parameters={"db": database},
    ).result_rows[0][0]
    if not exists:
        return 0
    rows = client.query(
        f"SELECT max(version) FROM {quote_database(database)}.schema_migrations"
    ).result_rows
    return int(rows[0][0])


def check_schema(client: Client, database: str, known: Sequence[Migration] | None = None) -> int:
    """Raise unless ``database`` is exactly at the newest known version; return that version."""
    migrations = discover() if known is None else known
    latest = migrations[-1].version if migrations else 0
    current = schema_version(client, database)
    if current > latest:
        raise SchemaTooNew(_too_new(database, current, latest))
    if current == 0 < latest:
        raise SchemaNotReady(f"database {database} has no computewatch tables: {FILL_STORE_FIRST}")
    if current < latest:
        raise SchemaNotReady(
            f"database {database} is at schema version {current}, this computewatch needs "
            f"{latest}: run `computewatch migrate`"
        )
    return current


def migrate(
    client: Client, settings: ClickHouseSettings, schema_dir: Path = SCHEMA_DIR
) -> list[Migration]:
    """Create the database if needed and apply pending migrations; return those applied.

    Idempotent: every statement is ``IF NOT EXISTS`` and a version is recorded only after all its
    statements ran, so a run interrupted half-way is completed by the next one. Also brings the
    TTL of the raw tables in line with ``settings.events_ttl_days``.
    """
    migrations = discover(schema_dir)
    db = quote_database(settings.database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(_BOOKKEEPING.replace("{db}", db))
    current = schema_version(client, settings.database)
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise SchemaTooNew(_too_new(settings.database, current, latest))
    _warn_on_edited(client, settings.database, migrations)
    applied = []
    for migration in migrations:
        if migration.version <= current:
            continue
        logger.info("applying migration %03d_%s", migration.version, migration.name)
        for statement in migration.statements(settings):
            client.command(statement)
        client.insert(
            f"{db}.schema_migrations",
            [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        applied.append(migration)
    sync_ttl(client, settings)
    return applied


def sync_ttl(client: Client, settings: ClickHouseSettings) -> list[str]:
    """Set the raw tables' TTL to ``events_ttl_days`` where it differs; return tables changed."""
    days = int(settings.events_ttl_days)
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
        parameters={"db": settings.database},
    ).result_rows
    engines = {name: engine for name, engine in rows}
    changed = []
    for table, column in TTL_TABLES.items():
        engine = engines.get(table)
        if engine is None or f"toIntervalDay({days})" in engine:
            continue
        client.command(
            f"ALTER TABLE {quote_database(settings.database)}.{table} "
            f"MODIFY TTL {column} + toIntervalDay({days})",
            settings={"materialize_ttl_after_modify": 0},
        )
        changed.append(table)
    return changed


def _warn_on_edited(client: Client, database: str, migrations: Sequence[Migration]) -> None:
    rows = client.query(
        f"SELECT version, checksum FROM {quote_database(database)}.schema_migrations"
    ).result_rows
    recorded = {int(version): checksum for version, checksum in rows}
    for migration in migrations:
        old = recorded.get(migration.version)
        if old is not None and old != migration.checksum:
            logger.warning(
                "migration %03d_%s was edited after it was applied; edits are not re-run: "
                "add a new migration instead", migration.version, migration.name,
            )


def _too_new(database: str, current: int, latest: int) -> str:
    return (
        f"database {database} is at schema version {current}, newer than the {latest} this "
        "computewatch knows: upgrade computewatch (refusing to touch a newer schema)"
    )
