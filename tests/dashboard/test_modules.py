"""The dashboard modules' doctests (``dashboards/`` is not in the default doctest paths) and the
rule that only the data module talks to ClickHouse."""

from __future__ import annotations

import doctest
import importlib
import re

import pytest

from tests.dashboard.harness import DASHBOARDS

PURE_MODULES = ["access", "charts", "components", "frames", "site_map"]


@pytest.mark.parametrize("name", PURE_MODULES)
def test_doctests(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DASHBOARDS))
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_only_the_data_module_talks_to_clickhouse() -> None:
    storage_access = re.compile(r"clickhouse_connect|\.query(_df|_arrow)?\(|\.command\(|"
                                r"\bconnect\(|record_triage|SELECT\s", re.IGNORECASE)
    offenders = [
        str(path.relative_to(DASHBOARDS))
        for path in sorted(DASHBOARDS.rglob("*.py"))
        if path.name != "data.py" and storage_access.search(path.read_text())
    ]
    assert offenders == []
