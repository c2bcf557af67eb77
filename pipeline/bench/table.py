"""The bench's table and the verdicts on the issue's targets: text for the terminal, Markdown
for the README (between the ``<!-- bench:start -->`` / ``<!-- bench:end -->`` markers).

>>> replace_block("a\\n<!-- bench:start -->\\nold\\n<!-- bench:end -->\\nz\\n", "new")
'a\\n<!-- bench:start -->\\nnew\\n<!-- bench:end -->\\nz\\n'
"""

from __future__ import annotations

from pathlib import Path

from pipeline.bench.report import (
    BenchReport,
    Row,
    Verdict,
    fmt_bytes,
    fmt_rate,
    fmt_seconds,
    percentile,
)
from pipeline.bench.verdicts import verdicts
from pipeline.bench.worker import WorkerRun

START_MARKER = "<!-- bench:start -->"
END_MARKER = "<!-- bench:end -->"
TITLES = {
    "limit": "bare consumer (the limit)",
    "faust": "Faust alone (the worker's ceiling)",
    "worker": "`computewatch worker`, 1 process",
    "latency": "event → alert queryable in ClickHouse",
    "replay": "`computewatch replay`",
    "rss": "peak RSS of the engine",
    "scaleout": "scale-out: 2 workers, 1 group",
}


def _rate_of_limit(events_per_s: float, r: BenchReport) -> str:
    """``events_per_s``, and its share of the bare consumer's rate when that was measured."""
    share = f" = {events_per_s / r.limit.events_per_s:.1%} of the limit" if r.limit else ""
    return fmt_rate(events_per_s) + share


def _exactly_once(run: WorkerRun) -> str:
    state = "exactly once" if run.exactly_once else "NOT exactly once"
    return f"{state}: {run.rows:,} rows, {run.distinct:,} distinct event ids of {run.events:,}"


def limit_row(r: BenchReport) -> Row | None:
    if r.limit is None:
        return None
    return Row(
        TITLES["limit"],
        fmt_rate(r.limit.events_per_s),
        "aiokafka consumer in one process, `msgspec.json.decode` of every message; "
        "from the end of the first fetched batch to the last message",
    )


def faust_row(r: BenchReport) -> Row | None:
    if r.faust is None:
        return None
    return Row(
        TITLES["faust"],
        _rate_of_limit(r.faust.events_per_s, r),
        "the worker's Faust app (same settings and batching) with an agent that only counts "
        "its batches: no engine, no ClickHouse, no snapshots; fresh group, whole topic; "
        "from the end of the first batch to the last message",
    )


def worker_row(r: BenchReport) -> Row | None:
    if r.worker is None:
        return None
    return Row(
        TITLES["worker"],
        _rate_of_limit(r.worker.events_per_s, r),
        "the real command (validation, metrics, detectors, alerts, ClickHouse sink to a fresh "
        "chDB path, snapshots), fresh group, whole topic; events/s by the `ingested_at` stamps "
        "the sink puts on each event row, from the end of the first engine step to the last "
        f"row; {_exactly_once(r.worker)}; worker peak RSS "
        f"{fmt_bytes(max(r.worker.peak_rss_bytes, default=0))}",
    )


def _percentiles(values: tuple[float, ...]) -> str:
    if not values:
        return "no alert matched"
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return f"p50 {fmt_seconds(p50)} · p99 {fmt_seconds(p99)}"


def latency_rows(r: BenchReport) -> list[Row]:
    out = []
    for lat in r.latency:
        at = f"at {fmt_rate(lat.rate)}"
        out.append(
            Row(
                f"{TITLES['latency']}, {at}",
                _percentiles(lat.clickhouse_s),
                f"{len(lat.clickhouse_s)} alerts at {lat.boundaries} minute boundaries after "
                f"{r.config.history_minutes:g} min of preloaded history; from handing the event "
                "that completes the detection (first one stamped ≥ boundary + 5 s, or ≥ the tick "
                "for a peek at the open minute) to the "
                "producer, to the worker's alerts insert returning; event time = wall clock "
                f"during the live phase; {fmt_rate(lat.achieved_rate)} sent (incl. injected "
                f"spikes), producer p99 {fmt_seconds(lat.producer_late_p99_s)} behind schedule; "
                f"backlog drained {fmt_seconds(lat.drained_after_s)} after the last send "
                "(offsets are committed every 2.8 s); worker peak RSS "
                f"{fmt_bytes(lat.worker_peak_rss_bytes)}",
            )
        )
        out.append(
            Row(
                f"event → alert on `compute.alerts`, {at}",
                _percentiles(lat.topic_s),
                "same alerts, arrival on the alerts topic; the worker sends alerts before it "
                "flushes the batch to ClickHouse, so this comes first",
            )
        )
    return out


def replay_row(r: BenchReport) -> Row | None:
    rep = r.replay
    if rep is None:
        return None
    return Row(
        f"{TITLES['replay']}, {rep.events:,} events",
        f"{fmt_rate(rep.replay_events_per_s)} = {rep.ratio:.1%} of plain JSON decoding "
        f"({fmt_rate(rep.decode_events_per_s)})",
        f"simulated file ({rep.file_bytes / 1e6:,.0f} MB, {r.config.fleet_rate:g} requests/s of "
        "event time); replay's own summary line; decoding = reading the same file and "
        "`msgspec.json.decode` of each line, same run",
    )


def rss_row(r: BenchReport) -> Row | None:
    rss = r.rss
    if rss is None:
        return None
    return Row(
        f"{TITLES['rss']}, {rss.keys:,} api keys",
        fmt_bytes(rss.peak_bytes),
        f"peak RSS (`VmHWM`) of a fresh child process feeding one engine {rss.events:,} "
        f"events over 1 h of event time from exactly {rss.keys:,} keys; "
        f"{fmt_bytes(rss.baseline_bytes)} before the first event "
        f"({fmt_rate(rss.events / rss.seconds)})",
    )


def scaleout_row(r: BenchReport) -> Row | None:
    run = r.scaleout
    if run is None:
        return None
    ratio = f" = {run.events_per_s / r.worker.events_per_s:.2f}× one worker" if r.worker else ""
    split = " / ".join(f"{n / max(run.rows, 1):.0%}" for n in run.rows_per_worker)
    return Row(
        TITLES["scaleout"],
        fmt_rate(run.events_per_s) + ratio,
        f"{_exactly_once(run)} (union of both chDB paths; split {split}); both joined an "
        "empty topic and were paused while the N events were produced, then resumed "
        "together; same rate definition as one worker; "
        f"{fmt_rate(run.busy_events_per_s)} while both were busy",
    )


def rows(report: BenchReport) -> list[Row]:
    out: list[Row] = []
    for part, make in (
        ("limit", limit_row),
        ("faust", faust_row),
        ("worker", worker_row),
        ("latency", latency_rows),
        ("replay", replay_row),
        ("rss", rss_row),
        ("scaleout", scaleout_row),
    ):
        if part in report.errors:
            out.append(Row(TITLES[part], "FAILED", report.errors[part]))
            continue
        made = make(report)
        out.extend(made if isinstance(made, list) else [made] if made else [])
    return out


def markdown(report: BenchReport) -> str:
    c = report.config
    lines = [
        "### `computewatch bench`",
        "",
        f"One run of `{report.command}` ({report.seconds / 60:.1f} min) on "
        f"{report.machine.line()}, {_load(report.load_after)} at the end (other work shares "
        f"this machine). Throughput parts: N = {c.events:,} simulated events "
        f"({c.tenants} tenants, {c.fleet_rate:g} requests/s of event time) on a "
        f"{c.partitions}-partition topic of the local broker. Regenerate this block with "
        "`computewatch bench [flags] --readme README.md` (broker from `scripts/kafka.sh start`).",
        "",
        "| measurement | result | how |",
        "|---|---|---|",
    ]
    lines += [f"| {r.measurement} | {r.result} | {r.how} |" for r in rows(report)]
    lines += ["", "Targets of issue 8 on this machine:", ""]
    lines += [f"- {v.target}: {_state(v, '**met**', '**not met**')} — {v.detail}"
              for v in verdicts(report)]  # fmt: skip
    return "\n".join(lines) + "\n"


def text(report: BenchReport) -> str:
    table = rows(report)
    width = max([len(r.measurement) for r in table] + [20])
    lines = [f"machine: {report.machine.line()}, {_load(report.load_after)} at the end", ""]
    for r in table:
        lines.append(f"{r.measurement:<{width}}  {r.result}")
        lines.append(f"{'':<{width}}  ({r.how})")
    lines.append("")
    lines += [f"[{_state(v, 'MET', 'NOT MET')}] {v.target}: {v.detail}" for v in verdicts(report)]
    return "\n".join(lines) + "\n"


def _load(load: tuple[float, float, float]) -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in load)


def _state(verdict: Verdict, met: str, not_met: str) -> str:
    return "not judged" if verdict.met is None else met if verdict.met else not_met


def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between the bench markers replaced by ``block``."""
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"no {START_MARKER} ... {END_MARKER} block found")
    return f"{text[: start + len(START_MARKER)]}\n{block.strip()}\n{text[end:]}"


def update_readme(path: Path, block: str) -> None:
    """Replace the bench block of the README at ``path`` with ``block``."""
    path.write_text(replace_block(path.read_text(encoding="utf-8"), block), encoding="utf-8")
