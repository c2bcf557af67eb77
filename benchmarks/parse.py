"""Throughput of ``parse_event`` on a realistic message mix, next to plain JSON decoding.

Usage: ``python benchmarks/parse.py [--events N] [--repeat R] [--invalid-share F] [--seed S]``

The mix: events from a small fleet (tenants, models, routes, statuses), some with nulls, optional
fields left out or extra fields, plus a share of invalid messages of the kinds in issue 3. All
three decoders read the same bytes in the same run; passes interleave and each one's best of R
passes is reported, in events per CPU-second of this (single-threaded) process. No I/O.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipeline.events import InvalidEvent, parse_event

TENANTS = [f"tenant-{i:03d}" for i in range(40)]
MODELS = ["reasoner-large", "reasoner-small", "chat-fast", "coder-v2"]
ROUTES = ["fast", "standard", "deep"]
STATUSES = ["ok"] * 92 + ["truncated"] * 3 + ["timeout"] * 2 + ["error"] * 2 + ["cancelled"]
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def valid_event(rng: random.Random, index: int) -> dict[str, Any]:
    """One plausible event; its shape varies the way real traffic does."""
    route = rng.choice(ROUTES)
    reasoning = 0 if route == "fast" else int(rng.lognormvariate(7, 1))
    ts = START + timedelta(milliseconds=index * 7 + rng.randrange(5))
    event: dict[str, Any] = {
        "schema_version": "1",
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "tenant_id": rng.choice(TENANTS),
        "api_key_id": f"key-{rng.randrange(200)}",
        "model": rng.choice(MODELS),
        "server_id": f"gpu-{rng.randrange(64):02d}",
        "route": route,
        "difficulty": None if rng.random() < 0.1 else round(rng.random(), 3),
        "prompt_tokens": int(rng.lognormvariate(6, 1)),
        "completion_tokens": int(rng.lognormvariate(5, 1)),
        "reasoning_tokens": reasoning,
        "passes": 1 if rng.random() < 0.8 else rng.randint(2, 8),
        "budget_tokens": None if route == "fast" else rng.choice([2048, 4096, 16384]),
        "gpu_ms": round(rng.lognormvariate(6, 1), 2),
        "latency_ms": round(rng.lognormvariate(7, 1), 2),
        "confidence": None if rng.random() < 0.05 else round(rng.random(), 3),
        "status": rng.choice(STATUSES),
    }
    if rng.random() < 0.9:
        event["ttft_ms"] = round(rng.lognormvariate(5, 0.5), 2)
    if rng.random() < 0.5:
        event["gpu_type"], event["region"] = "H100", rng.choice(["eu-west-1", "us-east-1"])
    if rng.random() < 0.05:
        event["sdk"] = {"name": "computewatch-python", "version": "0.1.0"}
    return event


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda e: msgspec.json.encode({**e, field: value})


INVALID: list[Callable[[dict[str, Any]], bytes]] = [
    lambda e: msgspec.json.encode(e)[:-7],  # bad JSON (truncated)
    _set("prompt_tokens", "512"),  # wrong type
    _set("reasoning_tokens", -1),  # negative tokens
    lambda e: msgspec.json.encode({**e, "gpu_ms": 0.5}).replace(b"0.5", b"NaN"),  # NaN
    lambda e: msgspec.json.encode({k: v for k, v in e.items() if k != "tenant_id"}),  # missing
    _set("ts", "2026-03-02T06:00:00"),  # bad timestamp (no zone)
    _set("status", "exploded"),  # unknown status
    _set("api_key_id", ""),  # empty id
    _set("schema_version", "2"),  # wrong schema_version
]


def build_mix(count: int, invalid_share: float, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    messages = []
    for index in range(count):
        event = valid_event(rng, index)
        if rng.random() < invalid_share:
            messages.append(rng.choice(INVALID)(event))
        else:
            messages.append(msgspec.json.encode(event))
    return messages


def run_parse_event(messages: list[bytes]) -> int:
    rejected = 0
    for raw in messages:
        try:
            parse_event(raw)
        except InvalidEvent:
            rejected += 1
    return rejected


def run_decoder(decode: Callable[[bytes], Any]) -> Callable[[list[bytes]], int]:
    def run(messages: list[bytes]) -> int:
        rejected = 0
        for raw in messages:
            try:
                decode(raw)
            except ValueError:  # msgspec.DecodeError and json.JSONDecodeError are ValueErrors
                rejected += 1
        return rejected

    return run


def best_rates(
    runs: dict[str, tuple[Callable[[list[bytes]], int], list[bytes]]], repeat: int
) -> dict[str, float]:
    """Events per CPU-second, best of ``repeat`` passes; passes interleave across the runs so
    that every decoder sees the same machine (CPU time, so other processes do not count)."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, (run, messages) in runs.items():
            started = time.process_time()
            run(messages)
            best[name] = min(best[name], time.process_time() - started)
    return {name: len(runs[name][1]) / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--invalid-share", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    messages = build_mix(args.events, args.invalid_share, args.seed)
    valid_only = [m for m in messages if _is_valid(m)]
    rejected = run_parse_event(messages)
    rates = best_rates(
        {
            "parse_event (mix)": (run_parse_event, messages),
            "parse_event (valid only)": (run_parse_event, valid_only),
            "msgspec.json.decode (mix)": (run_decoder(msgspec.json.decode), messages),
            "json.loads (mix)": (run_decoder(json.loads), messages),
        },
        args.repeat,
    )
    mean_bytes = sum(map(len, messages)) / len(messages)
    lines = [
        f"messages={len(messages)} rejected={rejected} mean_bytes={mean_bytes:.0f} "
        f"repeat={args.repeat} (best pass, CPU time)",
        *(f"{name:<26} {rate:>12,.0f} events/s" for name, rate in rates.items()),
        f"parse_event / msgspec.json.decode = "
        f"{rates['parse_event (mix)'] / rates['msgspec.json.decode (mix)']:.2f}",
        f"parse_event / json.loads          = "
        f"{rates['parse_event (mix)'] / rates['json.loads (mix)']:.2f}",
    ]
    print("\n".join(lines))  # noqa: T201 - printing the numbers is this script's job


def _is_valid(raw: bytes) -> bool:
    try:
        parse_event(raw)
    except InvalidEvent:
        return False
    return True


if __name__ == "__main__":
    main()
