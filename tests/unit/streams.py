"""Hand-built event streams for detector tests: a tiny fleet and one change applied to it.

Each stream is a few hours of a small fleet (6 api keys in 3 tenants, 2 models on 7 servers)
with an optional ``change(minute, request) -> request`` that rewrites requests from minute
``start`` on. Everything is seeded; nothing here is the product's simulator.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from pipeline.events import AllocationEvent

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
KEYS = {f"k{i}": f"t{i % 3}" for i in range(6)}
SERVERS = {"s0": "m0", "s1": "m0", "s2": "m0", "s3": "m0", "s4": "m1", "s5": "m1", "s6": "m1"}
ROUTES = {"fast": (1, 512), "standard": (1, 2048), "deep": (3, 8192)}  # passes, budget


@dataclass(frozen=True)
class Request:
    key: str
    server: str
    difficulty: float
    route: str
    reasoning: int
    completion: int
    passes: int
    gpu_factor: float = 1.0
    status: str = "ok"
    confidence: float = 0.8


Change = Callable[[int, Request], Request | list[Request]]


def route_for(difficulty: float) -> str:
    return "fast" if difficulty < 0.3 else "standard" if difficulty < 0.7 else "deep"


def base_request(rng: random.Random, key: str, difficulty: float | None = None) -> Request:
    d = rng.random() if difficulty is None else difficulty
    route = route_for(d)
    passes, budget = ROUTES[route]
    reasoning = int(min(budget, budget * (0.2 + 0.5 * d) * rng.lognormvariate(0, 0.25)))
    return Request(
        key=key,
        server=rng.choice(list(SERVERS)),
        difficulty=d,
        route=route,
        reasoning=reasoning,
        completion=int(200 * rng.lognormvariate(0, 0.3)),
        passes=passes,
        status="truncated" if rng.random() < 0.01 else "ok",
        confidence=min(1.0, max(0.0, 0.8 + rng.gauss(0, 0.05))),
    )


def to_event(rng: random.Random, minute: int, r: Request) -> AllocationEvent:
    ts = T0 + timedelta(minutes=minute, seconds=rng.random() * 59.9)
    tokens = r.reasoning + r.completion
    speed = 1.0 + 0.02 * int(r.server[1:])
    gpu = 0.5 * (300 + tokens) * r.passes * speed * r.gpu_factor * rng.lognormvariate(0, 0.05)
    return AllocationEvent(
        schema_version="1",
        event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        ts=ts,
        tenant_id=KEYS.get(r.key, "t-new"),
        api_key_id=r.key,
        model=SERVERS[r.server],
        server_id=r.server,
        route=r.route,
        difficulty=round(r.difficulty, 3),
        prompt_tokens=300,
        completion_tokens=r.completion,
        reasoning_tokens=r.reasoning,
        passes=r.passes,
        budget_tokens=ROUTES[r.route][1],
        gpu_ms=gpu,
        latency_ms=gpu * 1.3,
        status=r.status,  # type: ignore[arg-type]
        confidence=round(r.confidence, 4),
    )


def stream(
    seed: int = 1,
    minutes: int = 180,
    per_key_per_minute: int = 10,
    change: Change | None = None,
    start: int = 120,
) -> Iterator[AllocationEvent]:
    """Events of the tiny fleet, minute by minute, in time order within each minute."""
    rng = random.Random(seed)
    for minute in range(minutes):
        batch = []
        for key in KEYS:
            for _ in range(
                max(0, int(rng.gauss(per_key_per_minute, math.sqrt(per_key_per_minute))))
            ):
                request = base_request(rng, key)
                if change is not None and minute >= start:
                    changed = change(minute, request)
                    batch.extend(changed if isinstance(changed, list) else [changed])
                else:
                    batch.append(request)
        events = [to_event(rng, minute, r) for r in batch]
        events.sort(key=lambda e: e.ts)
        yield from events


def on_key(key: str, fn: Callable[[Request], Request | list[Request]]) -> Change:
    def change(minute: int, r: Request) -> Request | list[Request]:
        return fn(r) if r.key == key else r

    return change


def inflate_reasoning(
    rng: random.Random, share: float, factor: float
) -> Callable[[Request], Request]:
    def fn(r: Request) -> Request:
        if rng.random() < share:
            return replace(r, reasoning=int(r.reasoning * factor))
        return r

    return fn
