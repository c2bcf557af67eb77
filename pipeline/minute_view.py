"""One minute of event time rolled up for the detectors: every entity type and the fleet.

A minute arrives as its groups: the sums (:class:`EntityMinute`) of each (tenant, api key,
model, route, server) that had requests in it (:func:`groups_of` takes them from the open
windows). Groups are plain data, so one partition's can travel to the fleet stage and be
merged with the others' (:mod:`pipeline.fleet`).

>>> from pipeline.events import example_event
>>> from pipeline.metrics import WindowAggregator
>>> from pipeline.pricing import PriceTable
>>> agg = WindowAggregator(PriceTable({}), allowed_lateness_s=0)
>>> minute = agg.add(example_event())[0]
>>> view = build_minute_view(minute, groups_of(agg.open_groups(minute)), end_s=minute + 15)
>>> view.entities("api_key")["key-1"].requests, (view.end - view.start).total_seconds()
(1, 15.0)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from pipeline.detectors import EntityMinute, MinuteView
from pipeline.detectors.base import Group
from pipeline.metrics import WINDOW_S, GroupKey, WindowTotals


def groups_of(open_groups: Iterable[tuple[GroupKey, WindowTotals]]) -> list[Group]:
    """The sums of a minute's open window groups, as detectors read them (copies)."""
    return [(key[1:], totals.entity_minute()) for key, totals in open_groups]


def build_minute_view(
    minute: int, groups: Sequence[Group], end_s: float | None = None
) -> MinuteView:
    """Roll one minute's groups up to every entity type and the fleet.

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
    model_routes: defaultdict[tuple[str, str], EntityMinute] = defaultdict(EntityMinute)
    tenant_of_key: dict[str, str] = {}
    model_of_server: dict[str, str] = {}
    for (tenant, api_key, model, route, server), sums in groups:
        fleet.add(sums)
        keys[api_key].add(sums)
        tenants[tenant].add(sums)
        models[model].add(sums)
        routes[route].add(sums)
        servers[server].add(sums)
        model_routes[(model, route)].add(sums)
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
        start, end, by_type, fleet, tenant_of_key, model_of_server, groups=groups,
        model_route=dict(model_routes),
    )  # fmt: skip


def build_peek_view(minute: int, groups: Sequence[Group], end_s: float) -> MinuteView:
    """The open minute so far, for a peek: api keys, tenants, models, servers and each model's
    routes.

    Cheaper than :func:`build_minute_view` (it runs several times a minute): each group is added
    once to its (tenant, key, model) and once to its server, and those are rolled up.

    >>> from pipeline.events import example_event
    >>> from pipeline.metrics import WindowAggregator
    >>> from pipeline.pricing import PriceTable
    >>> agg = WindowAggregator(PriceTable({}), allowed_lateness_s=0)
    >>> minute = agg.add(example_event())[0]
    >>> groups = groups_of(agg.open_groups(minute))
    >>> view = build_peek_view(minute, groups, end_s=minute + 15)
    >>> full = build_minute_view(minute, groups, end_s=minute + 15)
    >>> view.entities("model") == full.entities("model"), sorted(view.by_type)
    (True, ['api_key', 'model', 'server', 'tenant'])
    """
    parts: defaultdict[tuple[str, str, str], EntityMinute] = defaultdict(EntityMinute)
    model_routes: defaultdict[tuple[str, str], EntityMinute] = defaultdict(EntityMinute)
    servers: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    model_of_server: dict[str, str] = {}
    for (tenant, api_key, model, route, server), sums in groups:
        parts[(tenant, api_key, model)].add(sums)
        model_routes[(model, route)].add(sums)
        servers[server].add(sums)
        model_of_server[server] = model
    fleet = EntityMinute()
    keys: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    tenants: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    models: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
    tenant_of_key: dict[str, str] = {}
    for (tenant, api_key, model), part in parts.items():
        for bucket in (fleet, keys[api_key], tenants[tenant], models[model]):
            bucket.add(part)
        tenant_of_key[api_key] = tenant
    # plain dicts, as in build_minute_view
    by_type = {
        "api_key": dict(keys),
        "tenant": dict(tenants),
        "model": dict(models),
        "server": dict(servers),
    }
    start = datetime.fromtimestamp(minute, UTC)
    end = datetime.fromtimestamp(end_s, UTC)
    return MinuteView(
        start, end, by_type, fleet, tenant_of_key, model_of_server, groups=groups,
        model_route=dict(model_routes),
    )  # fmt: skip
