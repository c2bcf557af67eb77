"""``computewatch <command>``: each command parses its flags, calls the library and prints.

Settings come from ``COMPUTEWATCH_*`` variables (see :mod:`pipeline.config`); flags override.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from pipeline.config import Settings
from pipeline.outputs import removed_on_failure, unwritable
from pipeline.progress import progress_line

if TYPE_CHECKING:  # the commands import their modules lazily, to keep start-up fast
    from prometheus_client import CollectorRegistry

    from pipeline.embedded import OutputHandler
    from pipeline.ingest.mapping import SpanMapping
    from pipeline.simulate import FleetConfig
    from pipeline.simulate.labels import Incident
    from pipeline.simulate.workloads import Workload

app = typer.Typer(
    help="Watch LLM inference-time compute: telemetry, efficiency metrics and anomaly alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Exit with a one-line error: 2 for bad input, 1 for a service that is unavailable."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


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
    if settings.budgets.file is not None:  # a broken file stops every command, in one line
        from pipeline.budgets import BudgetFileError, load_budgets

        try:
            load_budgets(settings.budgets.file)
        except BudgetFileError as exc:
            fail(str(exc))
    return settings


@contextlib.contextmanager
def open_output(path: Path) -> Iterator[IO[bytes]]:
    try:
        fh = path.open("wb")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
    with fh:
        yield fh


def writable(*paths: Path | None) -> list[Path]:
    """The output files given, each checked to be writable before any work starts."""
    given = [path for path in paths if path is not None]
    for path in given:
        if (why := unwritable(path)) is not None:
            fail(f"cannot write {path}: {why}")
    return given


def existing_file(path: Path, what: str) -> Path:
    if not path.is_file():
        fail(f"{what} file not found: {path}")
    return path


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """A store that cannot be used, in one line: exit 1 when ClickHouse is unreachable or
    another process holds the embedded store, 2 when something must be done first."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from pipeline.storage import MigrationError, SinkUnavailable, StoreNotFound, StoreUnavailable
    from pipeline.storage.client import StorageConfigError

    try:
        yield
    except (StoreUnavailable, SinkUnavailable) as exc:
        fail(str(exc), code=1)
    except (StoreNotFound, MigrationError, StorageConfigError) as exc:
        fail(str(exc))
    except ClickHouseError as exc:  # the traceback with --verbose
        logging.getLogger(__name__).info("ClickHouse failed", exc_info=True)
        fail(f"ClickHouse: {str(exc).strip().splitlines()[0]}", code=1)


def note_new_store(settings: Settings) -> None:
    """Say where a writing command creates the embedded store: a relative path such as the
    default ``chdb://./data/clickhouse`` lands in the current directory."""
    from pipeline.storage.client import chdb_path, describe_url, is_embedded

    url = settings.clickhouse.url
    if is_embedded(url) and (path := chdb_path(url)) != ":memory:" and not Path(path).exists():
        typer.echo(f"creating the embedded store {path} ({describe_url(url)})", err=True)


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:  # their retry warnings would precede our one-line error; -v shows them
        for name in ("urllib3.connectionpool", "clickhouse_connect"):
            logging.getLogger(name).setLevel(logging.ERROR)


Partitions = Annotated[
    int | None,
    typer.Option(
        min=1,
        metavar="N",
        help="Split the stream into N partitions by its message key, as Kafka does "
        "(COMPUTEWATCH_KAFKA_MESSAGE_KEY, tenant by default), and run the two stages as the "
        "workers do (default: COMPUTEWATCH_KAFKA_PARTITIONS, 4).",
    ),
]


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
    partitions: Partitions = None,
) -> None:
    """Run the worker's core over recorded events, driven by event time (backtesting)."""
    from pipeline.embedded import AlertsWriter, DeadLettersWriter, replay_file

    existing_file(events, "events")
    settings = load_settings(clickhouse__url=clickhouse_url, kafka__partitions=partitions)
    outputs = writable(alerts_out, dead_letters_out)
    with storage_errors(), removed_on_failure(outputs), contextlib.ExitStack() as stack:
        handlers: list[OutputHandler] = []
        if store:  # first: no output file is written when the store cannot be used
            note_new_store(settings)
            handlers.append(stack.enter_context(_store_handler(settings)))
        if alerts_out is not None:
            handlers.append(AlertsWriter(stack.enter_context(open_output(alerts_out))))
        if dead_letters_out is not None:
            handlers.append(DeadLettersWriter(stack.enter_context(open_output(dead_letters_out))))
        with progress_line() as progress:
            summary = replay_file(  # metric rows are only read by the store
                events, settings, handlers, progress=progress, metric_rows=store
            )
    typer.echo(summary.line())


@contextlib.contextmanager
def _store_handler(settings: Settings) -> Iterator[OutputHandler]:
    from pipeline.storage import open_store

    with open_store(settings) as store:
        yield store.write_step


Hours = Annotated[
    float, typer.Option(min=0.001, metavar="HOURS", help="Hours of event time to simulate.")
]
Rate = Annotated[
    float, typer.Option(min=0.001, metavar="REQ/S", help="Fleet-wide mean requests per second.")
]
Seed = Annotated[
    int, typer.Option(min=0, metavar="SEED", help="Random seed (same seed, same traffic).")
]
Tenants = Annotated[int, typer.Option(min=1, metavar="N", help="Number of tenants in the fleet.")]
WorkloadHours = Annotated[
    float | None,
    typer.Option(
        min=0.001, metavar="HOURS", help="Hours of event time (default: the workload's, 24 or 12)."
    ),
]
WorkloadRate = Annotated[
    float | None,
    typer.Option(
        min=0.001, metavar="REQ/S", help="Fleet-wide mean requests per second (default 25)."
    ),
]
WorkloadTenants = Annotated[
    int | None,
    typer.Option(min=1, metavar="N", help="Tenants in the fleet (default: 30, bursty 60)."),
]
Arrivals = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Drive arrivals and token counts by this recorded trace (Mooncake JSON lines, or "
        "CSV timestamp,prompt_tokens,completion_tokens), looped to --hours: the trace workload.",
    ),
]


def fleet_config(
    hours: float, rate: float, seed: int, tenants: int, start: datetime | None = None
) -> FleetConfig:
    from pipeline.simulate import FleetConfig

    config = FleetConfig(hours=hours, rate=rate, seed=seed, tenants=tenants)
    return config if start is None else replace(config, start=start)


def start_time(text: str | None, hours: float) -> datetime | None:
    """``--start``: an ISO date or date-time (UTC unless it has an offset), or ``now`` for
    history that ends now; None when not given."""
    if text is None:
        return None
    if text == "now":
        return (datetime.now(UTC) - timedelta(hours=hours)).replace(microsecond=0)
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        fail(
            f"--start takes a date (2026-03-02), a date-time (2026-03-02T08:00) or now, "
            f"not {text!r}"
        )
    return start if start.tzinfo is not None else start.replace(tzinfo=UTC)


def too_short(config: FleetConfig) -> str:
    """Why the default suite does not fit ``config``, with the fewest hours that work."""
    from pipeline.feeds import shortest_suite_hours

    least = shortest_suite_hours(config)
    fix = f"use --hours {least:g} or more" if least is not None else "use more --hours"
    return f"{config.hours:g} h is too short for the default suite after its warm-up: {fix}"


def time_span(config: FleetConfig) -> str:
    """The event time a simulation covers, and the ``usage`` command that covers its days."""
    start = config.start.astimezone(UTC)
    end = start + timedelta(hours=config.hours)
    after_last_day = (end - timedelta(microseconds=1)).date() + timedelta(days=1)
    return (
        f"event time {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; once stored (replay "
        f"--store): computewatch usage --from {start.date()} --to {after_last_day}"
    )


def choose_workloads(names: list[str], arrivals: Path | None) -> list[Workload]:
    """The workloads named (``all`` for every built-in one); ``--arrivals`` replaces ``trace``."""
    from pipeline.simulate.arrivals import TraceError, load_trace
    from pipeline.simulate.workloads import WORKLOADS, Workload

    if arrivals is not None:
        try:
            load_trace(existing_file(arrivals, "arrivals"))
        except TraceError as exc:
            fail(str(exc))
        if not names:
            return [Workload.from_trace(arrivals)]
    wanted = list(WORKLOADS) if "all" in names else names
    unknown = [n for n in wanted if n not in WORKLOADS]
    if unknown:
        fail(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)} or all")
    chosen = [WORKLOADS[n] for n in dict.fromkeys(wanted)]
    if arrivals is not None:
        chosen = [Workload.from_trace(arrivals) if w.name == "trace" else w for w in chosen]
    return chosen


def workload_config(
    workload: Workload, hours: float | None, rate: float | None, seed: int, tenants: int | None
) -> FleetConfig:
    """The fleet for ``workload``, with the flags given over its defaults."""
    return fleet_config(
        hours if hours is not None else workload.hours,
        rate if rate is not None else workload.rate,
        seed,
        tenants if tenants is not None else workload.tenants,
    )


@app.command()
def simulate(
    hours: WorkloadHours = None,
    rate: WorkloadRate = None,
    seed: Seed = 0,
    tenants: WorkloadTenants = None,
    workload: Annotated[
        str, typer.Option(help="Traffic shape: default (smooth), bursty, or trace.")
    ] = "default",
    arrivals: Arrivals = None,
    out: Annotated[
        Path | None, typer.Option(help="Fast-forward to this JSONL file (else: send to Kafka).")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Write the incident labels here.")] = None,
    incidents: Annotated[
        bool, typer.Option(help="Inject the default suite of attacks, faults and benign shifts.")
    ] = True,
    misrouting: Annotated[
        bool,
        typer.Option(
            help="With --out: also plant a labelled misrouting for `computewatch advise` to find "
            "(half of the first model's difficulty 0.4-0.6 requests routed deep for nothing)."
        ),
    ] = False,
    budget_burn: Annotated[
        bool,
        typer.Option(
            help="With --out and --budgets-out: also plant a tenant burning through its weekly "
            "budget (3x its traffic from the first midnight after 3 days; needs 5 days of "
            "--hours), labelled budget_burn with its budget and when it ran out."
        ),
    ] = False,
    budgets_out: Annotated[
        Path | None,
        typer.Option(
            help="With --budget-burn: write every tenant's weekly budget here (TOML, for "
            "COMPUTEWATCH_BUDGETS_FILE): its usual spend x 7 x 1.25, the burning tenant's x 1.2."
        ),
    ] = None,
    fast_forward: Annotated[
        bool, typer.Option(help="To Kafka: send as fast as possible instead of in real time.")
    ] = False,
    kafka_bootstrap: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_KAFKA_BOOTSTRAP.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Start of event time: an ISO date or date-time (UTC unless it has an offset), "
            "or 'now' for history that ends now. Default: the simulator's fixed date.",
        ),
    ] = None,
) -> None:
    """Simulate a fleet of inference servers: to files (--out) or to Kafka in real time."""
    from pipeline.feeds import simulate_to_files, simulate_to_kafka
    from pipeline.simulate import HorizonTooShort, planted_budget_burn, planted_misrouting

    names = [workload] if arrivals is None or workload != "default" else []
    (chosen,) = choose_workloads(names, arrivals)
    config = workload_config(chosen, hours, rate, seed, tenants)
    start_at = start_time(start, config.hours)
    config = config if start_at is None else replace(config, start=start_at)
    if budget_burn != (budgets_out is not None):
        fail("--budget-burn and --budgets-out go together")
    if out is not None:
        try:
            burn = [planted_budget_burn(config)] if budget_burn else []
        except HorizonTooShort as exc:
            fail(str(exc))
        outputs = writable(out, labels, budgets_out)
        try:
            with removed_on_failure(outputs), progress_line() as progress:
                planted = [planted_misrouting(config)] if misrouting else []
                count = simulate_to_files(config, out, labels, incidents, chosen, progress,
                                          [*planted, *burn])  # fmt: skip
                if budgets_out is not None:
                    plant_budgets(out, labels, budgets_out, burn[0].incident())
        except HorizonTooShort:
            fail(f"{too_short(config)}, or --no-incidents")
        typer.echo(
            f"wrote {count} events to {out}" + (f" and labels to {labels}" if labels else "")
        )
        typer.echo(time_span(config))
        return
    if labels is not None:
        fail("--labels needs --out (labels describe a file of events)")
    for flag, given in (("--misrouting", misrouting), ("--budget-burn", budget_burn)):
        if given:
            fail(f"{flag} needs --out")
    if start is not None and not fast_forward:
        fail("--start needs --out or --fast-forward (in real time, events are dated now)")
    settings = load_settings(kafka__bootstrap=kafka_bootstrap)
    try:
        sent = simulate_to_kafka(
            config,
            settings,
            realtime=not fast_forward,
            incidents=incidents,
            progress=lambda n: typer.echo(f"sent {n} events", err=True),
            workload=chosen,
        )
    except HorizonTooShort:
        fail(f"{too_short(config)}, or --no-incidents")
    typer.echo(f"sent {sent} events to {settings.kafka.events_topic}")


def plant_budgets(events: Path, labels: Path | None, budgets_out: Path, burn: Incident) -> None:
    """Set the budgets of a planted budget burn from the events written; fill in its label."""
    from pipeline.budgets import format_budgets
    from pipeline.pricing import PriceTable
    from pipeline.simulate.budgets import planted_budgets
    from pipeline.simulate.labels import load_labels, save_labels

    settings = load_settings()
    incidents = load_labels(labels) if labels is not None else [burn]
    prices = PriceTable(settings.prices, settings.default_price)
    incidents, budgets = planted_budgets(events, incidents, prices)
    budgets_out.write_text(format_budgets(budgets), encoding="utf-8")
    if labels is not None:
        save_labels(labels, incidents)


@app.command()
def evaluate(
    events: Annotated[Path | None, typer.Option(help="JSONL events (with --labels).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Incident labels for --events.")] = None,
    seed: Annotated[
        list[int] | None,
        typer.Option(
            help="Without --events: simulate the default suite with this seed (repeat: each "
            "seed's table, then all of them together)."
        ),
    ] = None,
    workload: Annotated[
        list[str] | None,
        typer.Option(
            help="Without --events: default, bursty, trace or all (repeat; default all), each "
            "reported on its own table."
        ),
    ] = None,
    arrivals: Arrivals = None,
    hours: WorkloadHours = None,
    rate: WorkloadRate = None,
    tenants: WorkloadTenants = None,
    partitions: Partitions = None,
) -> None:
    """Score the detectors against labelled incidents: per-kind detection, delay, precision."""
    from pipeline.evaluation import across_seeds
    from pipeline.feeds import UnusableInput, evaluate_files, evaluate_suite
    from pipeline.simulate import HorizonTooShort

    settings = load_settings(kafka__partitions=partitions)
    if events is not None or labels is not None:
        if events is None or labels is None:
            fail("--events and --labels go together")
        try:
            with progress_line() as progress:
                report, line = evaluate_files(
                    existing_file(events, "events"), existing_file(labels, "labels"), settings,
                    progress,
                )  # fmt: skip
        except UnusableInput as exc:
            fail(str(exc))
        typer.echo(line)
        typer.echo(report.table())
        return
    for chosen in choose_workloads(workload or ([] if arrivals else ["all"]), arrivals):
        reports = []
        for s in seed or [0]:
            config = workload_config(chosen, hours, rate, s, tenants)
            try:
                with progress_line() as progress:
                    report, line = evaluate_suite(config, settings, chosen, progress)
            except HorizonTooShort:
                fail(too_short(config))
            typer.echo(
                f"\n### {chosen.name} workload, seed {s}, {config.hours:g} h, {config.tenants} "
                f"tenants, {config.rate:g} req/s, {settings.kafka.partitions} partitions\n"
            )
            typer.echo(report.table())
            typer.echo(f"\n({line})")
            reports.append((s, report))
        if len(reports) > 1:
            seeds = ", ".join(str(s) for s, _ in reports)
            typer.echo(f"\n### {chosen.name} workload, seeds {seeds} together\n")
            typer.echo(across_seeds(reports, config.hours))


@app.command()
def migrate(
    clickhouse_url: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_CLICKHOUSE_URL.")
    ] = None,
) -> None:
    """Create or upgrade the ClickHouse schema (idempotent)."""
    from pipeline.storage import migrate_database

    settings = load_settings(clickhouse__url=clickhouse_url)
    note_new_store(settings)
    with storage_errors():
        applied = migrate_database(settings)
    names = ", ".join(m.name for m in applied) if applied else "none (schema up to date)"
    typer.echo(f"applied migrations: {names}")


@app.command()
def usage(
    from_: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    to: Annotated[str, typer.Option(help="Day after the last, YYYY-MM-DD (exclusive).")],
    format: Annotated[str, typer.Option(help="csv, parquet or json.")] = "csv",
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    group_by: Annotated[str, typer.Option(help="tenant, api_key, model or day.")] = "tenant",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    clickhouse_url: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_CLICKHOUSE_URL.")
    ] = None,
) -> None:
    """Per-tenant usage and cost for a period, reconciling with the raw events."""
    from datetime import date

    from pipeline.storage import export_usage

    try:
        start, end = date.fromisoformat(from_), date.fromisoformat(to)
    except ValueError as exc:
        fail(f"dates must be YYYY-MM-DD: {exc}")
    if end <= start:
        fail("--to must be after --from (it is exclusive)")
    if format not in ("csv", "parquet", "json"):
        fail(f"--format must be csv, parquet or json, not {format!r}")
    if group_by not in ("tenant", "api_key", "model", "day"):
        fail(f"--group-by must be tenant, api_key, model or day, not {group_by!r}")
    if format == "parquet" and output is None:
        fail("--format parquet needs --output FILE")
    settings = load_settings(clickhouse__url=clickhouse_url)
    with storage_errors(), removed_on_failure(writable(output)):
        rows = export_usage(
            settings,
            start,
            end,
            tenant=tenant,
            group_by=group_by,
            format=format,
            output=output if output is not None else sys.stdout.buffer,
        )
    if rows == 0:
        who = f"tenant {tenant!r}" if tenant is not None else "any tenant"
        typer.echo(
            f"nothing matched: no usage by {who} from {start} to {end} (exclusive)", err=True
        )


@app.command()
def advise(
    from_: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    to: Annotated[str, typer.Option(help="Day after the last, YYYY-MM-DD (exclusive).")],
    model: Annotated[
        list[str] | None, typer.Option(metavar="M", help="Only this model (repeat for several).")
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            help="Confidence a cheaper route may lose and still be recommended (0 to 1): a band "
            "is capped when the 95 % interval of what the dearer route adds stays below it."
        ),
    ] = 0.01,
    format: Annotated[str, typer.Option(help="markdown or json.")] = "markdown",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    clickhouse_url: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_CLICKHOUSE_URL.")
    ] = None,
) -> None:
    """Where routing compute buys confidence and where a cheaper route would do, per model,
    difficulty band and route, with the money per day each change saves or costs."""
    from datetime import date

    from pipeline.advisor import Options
    from pipeline.advisor_report import to_json, to_markdown
    from pipeline.storage.allocation import advise_store

    try:
        start, end = date.fromisoformat(from_), date.fromisoformat(to)
    except ValueError as exc:
        fail(f"dates must be YYYY-MM-DD: {exc}")
    if end <= start:
        fail("--to must be after --from (it is exclusive)")
    if format not in ("markdown", "json"):
        fail(f"--format must be markdown or json, not {format!r}")
    if not 0 <= tolerance < 1:
        fail(f"--tolerance must be at least 0 and below 1, not {tolerance:g}")
    settings = load_settings(clickhouse__url=clickhouse_url)
    period = (start, end)
    with storage_errors(), removed_on_failure(writable(output)):
        advice = advise_store(settings, start, end, models=model,
                              options=Options(tolerance=tolerance))  # fmt: skip
        data = to_json(advice, period) if format == "json" else to_markdown(advice, period).encode()
        if output is None:
            sys.stdout.buffer.write(data)
        else:
            output.write_bytes(data)
    if advice.span.requests == 0:
        which = f"model {', '.join(model)}" if model else "any model"
        typer.echo(f"nothing matched: no events of {which} from {start} to {end} (exclusive)",
                   err=True)  # fmt: skip


@app.command()
def forecast(
    tenant: Annotated[str, typer.Option(help="The tenant, as its events name it.")],
    period: Annotated[
        str, typer.Option(help="day, week (from Monday) or month: the UTC calendar period.")
    ] = "month",
    at: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Project as of this hour (ISO date-time, UTC unless it has an offset). "
            "Default: the end of the tenant's last hour of traffic in the store.",
        ),
    ] = None,
    format: Annotated[str, typer.Option(help="markdown or json.")] = "markdown",
    clickhouse_url: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_CLICKHOUSE_URL.")
    ] = None,
) -> None:
    """A tenant's spend in the period so far and its projected total with an 80 % interval,
    from its own hourly history (up to 5 weeks: its pattern by hour of day, and day of week
    from two weeks on; its recent burn rate), and when its budget runs out if it will.

    Example: computewatch forecast --tenant acme --period month --format json
    """
    from pipeline.budgets import PERIODS
    from pipeline.forecast_report import forecast_json, forecast_markdown
    from pipeline.storage.budgets import NoHistory, UnknownEntity, tenant_forecast
    from pipeline.storage.client import connect
    from pipeline.storage.migrations import check_schema

    if period not in PERIODS:
        fail(f"--period must be day, week or month, not {period!r}")
    if format not in ("markdown", "json"):
        fail(f"--format must be markdown or json, not {format!r}")
    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at must be an ISO date-time such as 2026-03-05T06:00, not {at!r}")
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    settings = load_settings(clickhouse__url=clickhouse_url)
    with storage_errors():
        client = connect(settings.clickhouse, must_exist=True)
        try:
            check_schema(client, settings.clickhouse.database)
            result = tenant_forecast(client, tenant, period, when)
        except (UnknownEntity, NoHistory) as exc:
            fail(str(exc))
        finally:
            client.close()
    text = forecast_json(result) if format == "json" else forecast_markdown(result)
    sys.stdout.write(text)


def metrics_port_option(section: str) -> Any:
    """``--metrics-port`` of a command whose settings are ``COMPUTEWATCH_<section>_METRICS_*``."""
    return typer.Option(
        min=1,
        max=65535,
        help=f"Serve Prometheus metrics at http://HOST:PORT/metrics (HOST: "
        f"COMPUTEWATCH_{section}_METRICS_HOST, default 127.0.0.1). Overrides "
        f"COMPUTEWATCH_{section}_METRICS_PORT; needs the metrics extra.",
    )


@app.command()
def worker(
    kafka_bootstrap: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_KAFKA_BOOTSTRAP.")
    ] = None,
    clickhouse_url: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_CLICKHOUSE_URL.")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Faust log level.")] = "WARNING",
    metrics_port: Annotated[int | None, metrics_port_option("WORKER")] = None,
) -> None:
    """Consume compute.events with Faust: metrics and alerts to ClickHouse and compute.alerts."""
    from pipeline.stream import run_worker

    settings = load_settings(
        kafka__bootstrap=kafka_bootstrap,
        clickhouse__url=clickhouse_url,
        worker__metrics_port=metrics_port,
    )
    host, port = settings.worker.metrics_host, settings.worker.metrics_port
    instruments = None
    if port is not None:
        registry = serve_metrics("worker", host, port)  # checks for the extra first
        from pipeline.prometheus import PrometheusInstruments

        instruments = PrometheusInstruments(registry)
    reachable_kafka(settings)
    created_topics(settings)
    note_new_store(settings)
    run_worker(settings, loglevel=loglevel, instruments=instruments)


def serve_metrics(what: str, host: str, port: int) -> CollectorRegistry:
    """A Prometheus registry served at http://host:port/metrics, or a one-line exit."""
    if importlib.util.find_spec("prometheus_client") is None:
        fail("metrics need prometheus-client: pip install 'computewatch[metrics]'")
    from pipeline.prometheus import serving

    try:
        registry = serving(port, host)
    except OSError as exc:
        fail(f"cannot serve metrics on {host}:{port} ({exc.strerror}): choose another "
             "--metrics-port")  # fmt: skip
    typer.echo(f"{what} metrics at http://{host}:{port}/metrics", err=True)
    return registry


def reachable_kafka(settings: Settings) -> None:
    """Fail in one line unless Kafka answers as the settings say (TCP, and TLS verified with the
    configured CA): exit 2 for settings no client could use, 1 for a broker not reached."""
    from pipeline.kafka_check import KafkaUnreachable, check_reachable
    from pipeline.kafka_options import KafkaConfigError

    try:
        check_reachable(settings.kafka)
    except KafkaConfigError as exc:
        fail(str(exc))
    except KafkaUnreachable as exc:
        fail(str(exc), code=1)


def created_topics(settings: Settings) -> None:
    """Create the worker's missing topics before it joins its group (one created later is not
    read until a restart); fail in one line when the broker refuses."""
    from pipeline.topics import TopicsUnavailable, create_missing

    try:
        created = create_missing(settings.kafka)
    except TopicsUnavailable as exc:
        fail(str(exc), code=1)
    for name in created:
        typer.echo(f"created topic {name}", err=True)


Port = Annotated[int | None, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")]


@app.command()
def dashboard(
    port: Port = None,
    clickhouse_url: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_CLICKHOUSE_URL.")
    ] = None,
) -> None:
    """Serve the Streamlit dashboard on 127.0.0.1 (default port 8501)."""
    from pipeline.serve import serve_dashboard

    settings = load_settings(dashboard_port=port, clickhouse__url=clickhouse_url)
    serve_dashboard(settings)


@app.command()
def demo(
    port: Port = None,
    rate: Rate = 10.0,
    tenants: Tenants = 12,
    seed: Seed = 0,
    backfill_hours: Annotated[
        float, typer.Option(min=0, help="Hours of history fast-forwarded before going live.")
    ] = 6.0,
    otlp_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, metavar="PORT",
                     help="Also receive OTLP GenAI spans (POST /v1/traces) on this port and feed "
                     "them to the embedded engine with the fleet (needs the otlp extra)."),
    ] = None,
) -> None:
    """Embedded demo: a simulated fleet feeds the core in-process; the dashboard serves it."""
    from pipeline.serve import serve_demo

    settings = load_settings(dashboard_port=port, ingest__port=otlp_port)
    mapping = otlp_mapping(settings) if otlp_port is not None else None
    note_new_store(settings)
    config = fleet_config(24.0, rate, seed, tenants)
    try:
        serve_demo(settings, config, backfill_hours, otlp=mapping)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        fail(f"cannot listen on {settings.ingest.host}:{settings.ingest.port}: choose another "
             "--otlp-port")  # fmt: skip


def otlp_mapping(settings: Settings) -> SpanMapping:
    """The receiver's mapping, checked before anything starts (needs the otlp extra)."""
    try:
        import pipeline.ingest.receiver  # noqa: F401
    except ImportError as exc:
        fail(f"the OTLP receiver needs the otlp extra ({exc.name} is missing): "
             "pip install 'computewatch[otlp]'")  # fmt: skip
    from pipeline.ingest.mapping import MappingError, load_mapping

    try:
        return load_mapping(settings.ingest.mapping_file)
    except MappingError as exc:
        fail(str(exc))


@app.command()
def bench(
    only: Annotated[
        str | None,
        typer.Option(help="Comma-separated parts: limit,faust,worker,latency,replay,rss,scaleout."),
    ] = None,
    skip: Annotated[str | None, typer.Option(help="Comma-separated parts to leave out.")] = None,
    events: Annotated[int, typer.Option(min=1, help="N for limit, worker, scale-out.")] = 200_000,
    rate: Annotated[
        list[float] | None,
        typer.Option(min=1, help="Latency: live events/s (repeat for several runs; 5000)."),
    ] = None,
    live_seconds: Annotated[
        float, typer.Option(min=16, help="Latency: live phase (a minute boundary every 60 s).")
    ] = 150.0,
    history_minutes: Annotated[
        float,
        typer.Option(
            min=1,
            help="Latency: preloaded history (detector warm-up: volume needs 60 min, 30 of them "
            "learning each key's own spread).",
        ),
    ] = 65.0,
    history_rate: Annotated[float, typer.Option(min=0.1, help="Latency: history rate.")] = 50.0,
    replay_events: Annotated[int, typer.Option(min=1, help="Replay file size.")] = 1_000_000,
    keys: Annotated[int, typer.Option(min=1, help="RSS: distinct api keys.")] = 100_000,
    rss_events: Annotated[int, typer.Option(min=1, help="RSS: events fed.")] = 1_000_000,
    fleet_rate: Rate = 25.0,
    tenants: Tenants = 30,
    seed: Seed = 0,
    markdown_out: Annotated[Path | None, typer.Option(help="Write the table as Markdown.")] = None,
    readme: Annotated[
        Path | None, typer.Option(help="Replace the README's <!-- bench:start/end --> block.")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep work files here (default: a temp dir, removed).")
    ] = None,
    kafka_bootstrap: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_KAFKA_BOOTSTRAP.")
    ] = None,
) -> None:
    """Measure throughput, latency and memory against the bare-consumer limit (real broker)."""
    import shlex

    from pipeline.bench import PARTS, BenchConfig, markdown, parse_parts, run_bench, text
    from pipeline.bench import update_readme as write_readme

    settings = load_settings(kafka__bootstrap=kafka_bootstrap)
    try:
        chosen = parse_parts(only) if only else PARTS
        left_out = parse_parts(skip) if skip else ()
        config = BenchConfig(
            parts=tuple(p for p in chosen if p not in left_out),
            bootstrap=settings.kafka.bootstrap,
            workdir=workdir,
            events=events,
            partitions=settings.kafka.partitions,
            tenants=tenants,
            fleet_rate=fleet_rate,
            seed=seed,
            rates=tuple(rate or [5_000.0]),
            live_seconds=live_seconds,
            history_minutes=history_minutes,
            history_rate=history_rate,
            replay_events=replay_events,
            keys=keys,
            rss_events=rss_events,
        )
    except ValueError as exc:
        fail(str(exc))
    command = shlex.join(["computewatch", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else ""
    report = run_bench(
        config,
        progress=lambda line: typer.echo(line, err=True),
        command=command or "computewatch bench",
    )
    typer.echo(text(report))
    block = markdown(report)
    if markdown_out is not None:
        markdown_out.write_text(block, encoding="utf-8")
    if readme is not None:
        try:
            write_readme(readme, block)
        except (OSError, ValueError) as exc:
            fail(f"cannot update {readme}: {exc}")
    if report.errors:
        fail(f"bench parts failed: {', '.join(report.errors)}")


ingest_app = typer.Typer(
    help="Take per-request telemetry in the shapes inference stacks already send: "
    "`computewatch ingest otlp` receives OpenTelemetry GenAI spans.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(ingest_app, name="ingest")


@ingest_app.command("otlp")
def ingest_otlp(
    host: Annotated[
        str | None,
        typer.Option(metavar="HOST", help="Listen address (COMPUTEWATCH_INGEST_HOST; 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, metavar="PORT",
                     help="Port (COMPUTEWATCH_INGEST_PORT; 4318, the OTLP/HTTP port)."),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(metavar="FILE.toml",
                     help="Where tenant, api key, route, server, passes, confidence, difficulty "
                     "and GPU time come from (COMPUTEWATCH_INGEST_MAPPING_FILE; see README)."),
    ] = None,
    kafka_bootstrap: Annotated[
        str | None,
        typer.Option(metavar="HOST:PORT", help="Overrides COMPUTEWATCH_KAFKA_BOOTSTRAP."),
    ] = None,
    metrics_port: Annotated[int | None, metrics_port_option("INGEST")] = None,
) -> None:
    """OTLP/HTTP receiver: POST /v1/traces (protobuf or JSON, gzip).

    Each GenAI span becomes an allocation event on compute.events, keyed by tenant; spans it
    cannot map go to the dead-letter topic and are counted in the answer (partial success);
    other spans are skipped. Point an OpenTelemetry exporter, vLLM's --otlp-traces-endpoint or
    a collector's otlphttp exporter at http://HOST:PORT. COMPUTEWATCH_INGEST_TOKEN (or
    COMPUTEWATCH_INGEST_TOKEN_FILE) makes it require "Authorization: Bearer <token>".
    """
    settings = load_settings(
        ingest__host=host, ingest__port=port, ingest__mapping_file=mapping,
        kafka__bootstrap=kafka_bootstrap, ingest__metrics_port=metrics_port,
    )  # fmt: skip
    span_mapping = otlp_mapping(settings)
    ingest = settings.ingest
    metrics = None
    if ingest.metrics_port is not None:
        registry = serve_metrics("receiver", ingest.metrics_host, ingest.metrics_port)
        from pipeline.prometheus import ReceiverMetrics

        metrics = ReceiverMetrics(registry)
    from pipeline.ingest.receiver import run_receiver
    from pipeline.ingest.sink import DeliveryError, KafkaSink
    from pipeline.kafka_options import KafkaConfigError

    try:
        sink = KafkaSink(settings.kafka, timeout_s=ingest.delivery_timeout_s)
    except KafkaConfigError as exc:
        fail(str(exc))
    guarded = "bearer token required" if ingest.token else "no token (COMPUTEWATCH_INGEST_TOKEN)"
    try:
        run_receiver(
            ingest, span_mapping, sink, instruments=metrics,
            ready=lambda url: typer.echo(f"receiving OTLP traces on {url} ({guarded})", err=True),
        )  # fmt: skip
    except DeliveryError as exc:
        fail(f"{exc}: start it or set COMPUTEWATCH_KAFKA_BOOTSTRAP", 1)
    except OSError as exc:
        fail(f"cannot listen on {ingest.host}:{ingest.port} ({exc.strerror}): choose another "
             "--port or --host")  # fmt: skip


@app.command()
def doctor(
    kafka_bootstrap: Annotated[
        str | None,
        typer.Option(metavar="HOST:PORT", help="Overrides COMPUTEWATCH_KAFKA_BOOTSTRAP."),
    ] = None,
    clickhouse_url: Annotated[
        str | None, typer.Option(help="Overrides COMPUTEWATCH_CLICKHOUSE_URL.")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, metavar="SECONDS",
                     help="Longest wait for each connection, handshake or request."),
    ] = 5.0,
    max_lag: Annotated[
        int,
        typer.Option(min=0, metavar="N",
                     help="Warn when the consumer group is more than N messages behind."),
    ] = 10_000,
) -> None:
    """Check a deployment's settings end to end, one line per finding (ok, warn, fail).

    The broker with the configured security (TLS, SASL); the events, alerts, dead-letter,
    minutes and norms topics and their partitions; the consumer group's lag; ClickHouse and
    its schema version; the webhook, if one is set (an HTTP GET: no alert is sent). Nothing is
    created or changed. Exits 1 when a check fails (a warning alone exits 0).
    """
    from collections import Counter

    from pipeline.doctor import diagnose

    settings = load_settings(kafka__bootstrap=kafka_bootstrap, clickhouse__url=clickhouse_url)
    if not logging.getLogger().isEnabledFor(logging.INFO):  # its retries would fill the report
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    counts: Counter[str] = Counter()
    for finding in diagnose(settings, timeout_s=timeout, max_lag=max_lag):
        typer.echo(finding.line())
        counts[finding.status] += 1
    typer.echo(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail", err=True)
    if counts["fail"]:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
