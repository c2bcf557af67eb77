"""The command line as a new user meets it: help, one-line errors, no partial output, progress.

Each test runs ``computewatch`` in-process with typer's ``CliRunner`` (stdout and stderr apart)
and asserts what is printed, the exit status (2: bad input, 1: a service is unavailable) and
which files are left behind.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

COMMANDS = ("replay", "simulate", "evaluate", "migrate", "usage", "worker", "dashboard", "demo",
            "bench")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_without_truncating_names(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines)
    assert "…" not in result.stdout and "<bool>" not in result.stdout
    assert "│" not in result.stdout  # plain click help, not a rich panel that cuts cells


def test_help_shows_whole_flag_and_variable_names() -> None:
    text = CliRunner().invoke(app, ["simulate", "--help"], terminal_width=80).stdout
    assert "--fast-forward / --no-fast-forward" in text
    assert "COMPUTEWATCH_KAFKA_BOOTSTRAP" in text
    assert "--hours HOURS" in text
