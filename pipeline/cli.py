"""``computewatch <command>``: each command parses its flags, calls the library and prints.

Settings come from ``COMPUTEWATCH_*`` variables (see :mod:`pipeline.config`); flags override.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from pipeline.config import Settings

app = typer.Typer(
    help="Watch LLM inference-time compute: telemetry, efficiency metrics and anomaly alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str) -> NoReturn:
    """Exit non-zero with a one-line error."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def load_settings(**overrides: object) -> Settings:
    """The settings object, with flag values (None = not given) over the environment."""
    try:
        settings = Settings()
    except ValueError as exc:
        fail(f"invalid COMPUTEWATCH_* setting: {exc}".replace("\n", " "))
    updates = {k: v for k, v in overrides.items() if v is not None}
    for dotted, value in updates.items():
        section, _, name = dotted.partition("__")
        if name:
            part = getattr(settings, section).model_copy(update={name: value})
            settings = settings.model_copy(update={section: part})
        else:
            settings = settings.model_copy(update={section: value})
    return settings


@contextlib.contextmanager
def open_output(path: Path | None) -> Iterator[object]:
    if path is None:
        yield None
        return
    try:
        fh = path.open("wb")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
    with fh:
        yield fh


def existing_file(path: Path, what: str) -> Path:
    if not path.is_file():
        fail(f"{what} file not found: {path}")
    return path


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def replay(
    events: Annotated[Path, typer.Option(help="JSONL file of allocation events.")],
    alerts_out: Annotated[
        Path | None, typer.Option(help="Write alerts here, one per line.")
    ] = None,
    dead_letters_out: Annotated[
        Path | None, typer.Option(help="Write rejected messages here, one per line.")
    ] = None,
    store: Annotated[
        bool, typer.Option(help="Also write events, metrics and alerts to ClickHouse.")
    ] = False,
    clickhouse_url: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_CLICKHOUSE_URL.")
    ] = None,
) -> None:
    """Run the worker's core over recorded events, driven by event time (backtesting)."""
    from pipeline.embedded import AlertsWriter, DeadLettersWriter, replay_file

    existing_file(events, "events")
    settings = load_settings(clickhouse__url=clickhouse_url)
    with open_output(alerts_out) as alerts_fh, open_output(dead_letters_out) as dl_fh:
        handlers = []
        if alerts_fh is not None:
            handlers.append(AlertsWriter(alerts_fh))  # type: ignore[arg-type]
        if dl_fh is not None:
            handlers.append(DeadLettersWriter(dl_fh))  # type: ignore[arg-type]
        with contextlib.ExitStack() as stack:
            if store:
                handlers.append(stack.enter_context(_store_handler(settings)))
            summary = replay_file(events, settings, handlers)
    typer.echo(summary.line())


@contextlib.contextmanager
def _store_handler(settings: Settings) -> Iterator[object]:
    from pipeline.storage import open_store

    with open_store(settings) as store:
        yield store.write_step


def main() -> None:
    app()
