"""`computewatch ingest otlp`: readable help and one-line errors before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from pipeline.cli import app


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), terminal_width=80)


def one_line_error(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("args", [["ingest", "--help"], ["ingest", "otlp", "--help"]])
def test_help_fits_80_columns_and_names_the_settings(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 0
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    assert "│" not in result.stdout and "…" not in result.stdout


def test_otlp_help_says_where_to_point_exporters_and_how_to_guard_it() -> None:
    text = run("ingest", "otlp", "--help").stdout
    for needle in ("POST /v1/traces", "--port PORT", "4318", "COMPUTEWATCH_INGEST_TOKEN_FILE",
                   "--mapping FILE.toml", "dead-letter"):  # fmt: skip
        assert needle in text, needle


def test_a_bad_mapping_file_is_one_line_naming_the_file_and_field(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[tenant_id]\nattributes = "tenant.id"\ndefault = "t"\n', encoding="utf-8")
    line = one_line_error(run("ingest", "otlp", "--mapping", str(mapping)), 2)
    assert str(mapping) in line and "tenant_id.attributes" in line


def test_a_missing_mapping_file_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run("ingest", "otlp", "--mapping", str(tmp_path / "nope.toml")), 2)
    assert "cannot read mapping file" in line


def test_a_token_and_a_token_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv("COMPUTEWATCH_INGEST_TOKEN", "from-env")
    monkeypatch.setenv("COMPUTEWATCH_INGEST_TOKEN_FILE", str(token_file))
    line = one_line_error(run("ingest", "otlp"), 2)
    assert "COMPUTEWATCH_INGEST_TOKEN_FILE" in line and "from-env" not in line


def test_the_token_comes_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config import Settings

    token_file = tmp_path / "token"
    token_file.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv("COMPUTEWATCH_INGEST_TOKEN_FILE", str(token_file))
    token = Settings().ingest.token
    assert token is not None and token.get_secret_value() == "from-file"
    assert "from-file" not in repr(Settings().ingest)
