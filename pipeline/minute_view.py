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

from collections import defaultdict
from datetime import UTC, datetime

from pipeline.detectors import EntityMinute, MinuteView
from pipeline.metrics import WINDOW_S, WindowTotals


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
    fleet = EntityMinute()
    keys: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    tenants: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    models: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    routes: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    servers: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    pairs: defaultdict[tuple[str, str], EntityMinute] = defaultdict(EntityMinute)
    tenant_of_key: dict[str, str] = {}
    model_of_server: dict[str, str] = {}
    for (_, tenant, api_key, model, route, server), acc in groups:
        buckets = (
            fleet,
            keys[api_key],
            tenants[tenant],
            models[model],
            routes[route],
            servers[server],
            pairs[(api_key, model)],
        )
        _add_totals(buckets, acc)
        tenant_of_key[api_key] = tenant
        model_of_server[server] = model
    # plain dicts for the detectors: looking up an entity the minute lacks must not add it
    by_type = {
        "api_key": dict(keys),
        "tenant": dict(tenants),
        "model": dict(models),
        "route": dict(routes),
        "server": dict(servers),
    }
    return MinuteView(
        start, end, by_type, fleet, tenant_of_key, model_of_server, key_model=dict(pairs)
    )


def _add_totals(buckets: tuple[EntityMinute, ...], acc: WindowTotals) -> None:
    """Add one window group's sums to each of ``buckets``.

    A group counts towards several entities (its key, tenant, model, ...): its sums are read
    once, rather than copied into an :class:`EntityMinute` of its own first. Each bucket still
    adds the groups in the same order, so its float sums are the same to the last bit.
    """
    requests, prompt_tokens, passes = acc.requests, acc.prompt_tokens, acc.passes
    reasoning_tokens, token_passes, gpu_ms = acc.reasoning_tokens, acc.token_passes, acc.gpu_ms
    generated_tokens = acc.completion_tokens + reasoning_tokens
    runaway = acc.truncated + acc.timeouts
    confidence_sum, confidence_count = acc.confidence_sum, acc.confidence_count
    for bucket in buckets:
        bucket.requests += requests
        bucket.prompt_tokens += prompt_tokens
        bucket.generated_tokens += generated_tokens
        bucket.reasoning_tokens += reasoning_tokens
        bucket.passes += passes
        bucket.token_passes += token_passes
        bucket.gpu_ms += gpu_ms
        bucket.runaway += runaway
        bucket.confidence_sum += confidence_sum
        bucket.confidence_count += confidence_count


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
    parts: defaultdict[tuple[str, str, str], EntityMinute] = defaultdict(EntityMinute)
    for (_, tenant, api_key, model, _, _), acc in groups:
        _add_totals((parts[(tenant, api_key, model)],), acc)
    fleet = EntityMinute()
    keys: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    tenants: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    models: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    pairs: defaultdict[tuple[str, str], EntityMinute] = defaultdict(EntityMinute)
    tenant_of_key: dict[str, str] = {}
    for (tenant, api_key, model), part in parts.items():
        for bucket in (
            fleet,
            keys[api_key],
            tenants[tenant],
            models[model],
            pairs[(api_key, model)],
        ):
            bucket.add(part)
        tenant_of_key[api_key] = tenant
    # plain dicts, as in build_minute_view
    by_type = {"api_key": dict(keys), "tenant": dict(tenants), "model": dict(models)}
    start = datetime.fromtimestamp(minute, UTC)
    end = datetime.fromtimestamp(end_s, UTC)
    return MinuteView(start, end, by_type, fleet, tenant_of_key, key_model=dict(pairs))
