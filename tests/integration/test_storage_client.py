"""What the embedded engine allows, measured in fresh processes (no open client of another test
interferes): one path per process at a time, no second process on a held path, and a hard-link
snapshot that another process can read.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.config import ClickHouseSettings
from pipeline.storage.client import StorageConfigError, chdb_path, connect, describe_url


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_one_process_hosts_one_path_at_a_time(tmp_path: Path) -> None:
    result = run_python(f"""
        from pipeline.config import ClickHouseSettings as S
        from pipeline.storage.client import connect
        a = connect(S(url="chdb://{tmp_path}/a", database="d"), create_database=True)
        a2 = connect(S(url="chdb://{tmp_path}/a", database="d"))
        print("same path twice:", a2.query("SELECT 1").result_rows[0][0])
        try:
            connect(S(url="chdb://{tmp_path}/b", database="d"), create_database=True)
        except Exception as exc:
            print("second path while open:", type(exc).__name__)
        a.close(); a2.close()
        b = connect(S(url="chdb://{tmp_path}/b", database="d"), create_database=True)
        print("second path after close:", b.query("SELECT 1").result_rows[0][0])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "same path twice: 1",
        "second path while open: ProgrammingError",
        "second path after close: 1",
    ]


def test_a_second_process_cannot_open_a_held_path_but_can_read_a_snapshot(
    tmp_path: Path,
) -> None:
    held = tmp_path / "held"
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pipeline.config import ClickHouseSettings
            from pipeline.storage.client import connect
            c = connect(ClickHouseSettings(url="chdb://{held}", database="d"), create_database=True)
            c.command("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x")
            c.insert("t", [[i] for i in range(1000)], column_names=["x"])
            print("ready", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        blocked = run_python(f"""
            from pipeline.config import ClickHouseSettings
            from pipeline.storage.client import connect
            connect(ClickHouseSettings(url="chdb://{held}", database="d"))
        """)
        assert blocked.returncode != 0
        assert "Cannot lock file" in blocked.stderr or "EmbeddedServer" in blocked.stderr
        reader = run_python(f"""
            from pipeline.config import ClickHouseSettings
            from pipeline.storage.client import connect, snapshot_copy
            snap = snapshot_copy("{held}", "{tmp_path}/snap")
            c = connect(ClickHouseSettings(url=f"chdb://{{snap}}", database="d"))
            print(c.query("SELECT count(), sum(x) FROM t").result_rows[0])
        """)
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout.strip() == "(1000, 499500)"
    finally:
        if writer.stdin:
            writer.stdin.close()
        writer.wait(timeout=60)


def test_urls_and_credentials() -> None:
    assert chdb_path("chdb://memory") == ":memory:"
    assert chdb_path("chdb://./data/clickhouse").endswith("/data/clickhouse")
    assert describe_url("http://u:pw@host:8123/db?x=1") == "http://host:8123"
    with pytest.raises(StorageConfigError, match="chdb://path or http"):
        connect(ClickHouseSettings(url="ftp://host", database="d"))
