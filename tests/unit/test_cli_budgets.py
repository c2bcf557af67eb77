"""The budget commands' one-line refusals: the planted burn's flags, forecast's arguments, and a
budgets file that cannot be used (every command stops on it before doing anything)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_cli import one_line_error, run


def test_budget_burn_needs_its_budgets_file_and_five_days(tmp_path: Path) -> None:
    out, labels, budgets = tmp_path / "e.jsonl", tmp_path / "l.json", tmp_path / "b.toml"
    assert one_line_error(run("simulate", "--budget-burn"), 2) == (
        "error: --budget-burn and --budgets-out go together")
    assert one_line_error(run("simulate", "--budget-burn", "--budgets-out", str(budgets)), 2) == (
        "error: --budget-burn needs --out")
    result = run("simulate", "--hours", "48", "--no-incidents", "--out", str(out), "--labels",
                 str(labels), "--budget-burn", "--budgets-out", str(budgets))  # fmt: skip
    assert one_line_error(result, 2) == "error: --budget-burn needs 5 days of events (--hours 120)"
    assert not out.exists() and not budgets.exists()


def test_forecast_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'none'}"
    assert one_line_error(run("forecast", "--tenant", "a", "--period", "year"), 2) == (
        "error: --period must be day, week or month, not 'year'")
    assert one_line_error(run("forecast", "--tenant", "a", "--format", "csv"), 2) == (
        "error: --format must be markdown or json, not 'csv'")
    assert one_line_error(run("forecast", "--tenant", "a", "--at", "soon"), 2) == (
        "error: --at must be an ISO date-time such as 2026-03-05T06:00, not 'soon'")
    assert one_line_error(run("forecast", "--tenant", "a", "--clickhouse-url", url), 2).startswith(
        "error: no embedded store at ")
    assert "hourly history" in run("forecast", "--help").output


@pytest.mark.parametrize(("text", "why"), [
    ('[[budget]]\ntenant = "a"\nperiod = "week"\nusd = -1\n', "usd must be a number above 0"),
    ('[[budget]]\ntenant = "a"\nperiod = "week"\n', "give one of tenant or api_key"),
    ('[[budget]]\ntenant = "a"\nperiod = "week"\nusd = 1\n[[budget]]\ntenant = "a"\n'
     'period = "week"\nusd = 2\n', "budget 2 repeats tenant 'a' per week in usd"),
    ("[[budget]\n", "not valid TOML"),
])  # fmt: skip
def test_a_budgets_file_that_cannot_be_used_stops_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, why: str
) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(text)
    monkeypatch.setenv("COMPUTEWATCH_BUDGETS_FILE", str(path))
    line = one_line_error(run("migrate", "--clickhouse-url", f"chdb://{tmp_path / 'db'}"), 2)
    assert line.startswith(f"error: {path}: ") and why in line
    assert not (tmp_path / "db").exists()
