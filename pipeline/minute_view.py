"""One minute of event time rolled up for the detectors: every entity type and the fleet.

>>> from pipeline.events import example_event
>>> from pipeline.metrics import WindowAggregator
>>> from pipeline.pricing import PriceTable
>>> agg = WindowAggregator(PriceTable({}), allowed_lateness_s=0)
>>> group = agg.add(example_event())
>>> view = build_minute_view(group[0], agg.open_groups(group[0]), end_s=group[0] + 15)
>>> view.entities("api_key")["key-1"].requests, (view.end - view.start).total_seconds()
(1, 15.0)
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.detectors import EntityMinute, MinuteView
from pipeline.metrics import WINDOW_S, WindowTotals

ENTITY_TYPES = ("api_key", "tenant", "model", "route", "server")


def build_minute_view(
    minute: int,
    groups: list[tuple[tuple[int, str, str, str, str, str], WindowTotals]],
    end_s: float | None = None,
) -> MinuteView:
    """Roll one minute's open window groups up to every entity type and the fleet.

    ``end_s`` is the event time the view reaches when the minute is still open (a peek).
    """
    start = datetime.fromtimestamp(minute, UTC)
    end = datetime.fromtimestamp(minute + WINDOW_S if end_s is None else end_s, UTC)
    by_type: dict[str, dict[str, EntityMinute]] = {t: {} for t in ENTITY_TYPES}
    view = MinuteView(start, end, by_type, EntityMinute())
    for (_, tenant, api_key, model, route, server), acc in groups:
        part = EntityMinute(
            requests=acc.requests,
            prompt_tokens=acc.prompt_tokens,
            generated_tokens=acc.completion_tokens + acc.reasoning_tokens,
            reasoning_tokens=acc.reasoning_tokens,
            passes=acc.passes,
            token_passes=acc.token_passes,
            gpu_ms=acc.gpu_ms,
            runaway=acc.truncated + acc.timeouts,
            confidence_sum=acc.confidence_sum,
            confidence_count=acc.confidence_count,
        )
        view.fleet.add(part)
        for entity_type, entity_id in zip(
            ENTITY_TYPES, (api_key, tenant, model, route, server), strict=True
        ):
            bucket = by_type[entity_type].get(entity_id)
            if bucket is None:
                bucket = by_type[entity_type][entity_id] = EntityMinute()
            bucket.add(part)
        pair = view.key_model.get((api_key, model))
        if pair is None:
            pair = view.key_model[(api_key, model)] = EntityMinute()
        pair.add(part)
        view.tenant_of_key[api_key] = tenant
        view.model_of_server[server] = model
    return view


def build_peek_view(
    minute: int,
    groups: list[tuple[tuple[int, str, str, str, str, str], WindowTotals]],
    end_s: float,
) -> MinuteView:
    """The open minute so far, for a peek: api keys, tenants, models and each key's models.

    Cheaper than :func:`build_minute_view` (it runs several times a minute): each group is added
    once, to its (tenant, key, model), and those are rolled up.

    >>> from pipeline.events import example_event
    >>> from pipeline.metrics import WindowAggregator
    >>> from pipeline.pricing import PriceTable
    >>> agg = WindowAggregator(PriceTable({}), allowed_lateness_s=0)
    >>> group = agg.add(example_event())
    >>> view = build_peek_view(group[0], agg.open_groups(group[0]), end_s=group[0] + 15)
    >>> full = build_minute_view(group[0], agg.open_groups(group[0]), end_s=group[0] + 15)
    >>> view.entities("model") == full.entities("model"), sorted(view.by_type)
    (True, ['api_key', 'model', 'tenant'])
    """
    parts: dict[tuple[str, str, str], EntityMinute] = {}
    for (_, tenant, api_key, model, _, _), acc in groups:
        part = parts.get((tenant, api_key, model))
        if part is None:
            part = parts[(tenant, api_key, model)] = EntityMinute()
        part.requests += acc.requests
        part.prompt_tokens += acc.prompt_tokens
        part.generated_tokens += acc.completion_tokens + acc.reasoning_tokens
        part.reasoning_tokens += acc.reasoning_tokens
        part.passes += acc.passes
        part.token_passes += acc.token_passes
        part.gpu_ms += acc.gpu_ms
        part.runaway += acc.truncated + acc.timeouts
        part.confidence_sum += acc.confidence_sum
        part.confidence_count += acc.confidence_count
    start = datetime.fromtimestamp(minute, UTC)
    keys: dict[str, EntityMinute] = {}
    tenants: dict[str, EntityMinute] = {}
    models: dict[str, EntityMinute] = {}
    by_type = {"api_key": keys, "tenant": tenants, "model": models}
    view = MinuteView(start, datetime.fromtimestamp(end_s, UTC), by_type, EntityMinute())
    for (tenant, api_key, model), part in parts.items():
        view.fleet.add(part)
        for bucket_of, entity_id in ((keys, api_key), (tenants, tenant), (models, model)):
            bucket = bucket_of.get(entity_id)
            if bucket is None:
                bucket = bucket_of[entity_id] = EntityMinute()
            bucket.add(part)
        pair = view.key_model.get((api_key, model))
        if pair is None:
            pair = view.key_model[(api_key, model)] = EntityMinute()
        pair.add(part)
        view.tenant_of_key[api_key] = tenant
    return view
