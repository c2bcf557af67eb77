"""Fleet simulator: realistic inference traffic (contract v1 events) with labelled scenarios.

A pure library (no Kafka): build a :class:`FleetConfig`, pick scenarios (or
:func:`default_suite`), then :func:`simulate` yields column-wise :class:`EventBatch` es in event
time order, :func:`write_jsonl` writes them and :func:`save_labels` the ground truth;
:func:`paced` hands events out in real time.

>>> config = FleetConfig(tenants=4, rate=4.0, hours=0.05, seed=1)
>>> events = list(iter_events(config))
>>> events[0]["schema_version"], events[0]["ts"] <= events[-1]["ts"]
('1', True)
"""

from pipeline.simulate.fleet import (
    DEFAULT_MODELS,
    ApiKey,
    Fleet,
    FleetConfig,
    ModelSpec,
    Server,
    Tenant,
    build_fleet,
    diurnal,
)
from pipeline.simulate.generate import EventBatch, collect, iter_events, simulate, write_jsonl
from pipeline.simulate.labels import (
    ALL_ENTITIES,
    BENIGN_KINDS,
    Incident,
    decode_labels,
    encode_labels,
    load_labels,
    save_labels,
)
from pipeline.simulate.pacing import paced
from pipeline.simulate.router import DEFAULT_ROUTES, Route, Router
from pipeline.simulate.scenarios import (
    SCENARIOS,
    BudgetBurn,
    ConfidenceCollapse,
    DailyPeak,
    EfficiencyDegradation,
    FleetRollout,
    HarderProblems,
    Misrouting,
    NewTenant,
    PassExplosion,
    ReasoningInflation,
    RouteTrial,
    RunawayGeneration,
    Scenario,
    VolumeSpike,
    labels_for,
    make_scenario,
)
from pipeline.simulate.suite import (
    BENIGN,
    VARIANTS,
    HorizonTooShort,
    default_suite,
    planted_budget_burn,
    planted_misrouting,
)

__all__ = [
    "ALL_ENTITIES",
    "BENIGN",
    "BENIGN_KINDS",
    "DEFAULT_MODELS",
    "DEFAULT_ROUTES",
    "SCENARIOS",
    "VARIANTS",
    "ApiKey",
    "BudgetBurn",
    "ConfidenceCollapse",
    "DailyPeak",
    "EfficiencyDegradation",
    "EventBatch",
    "Fleet",
    "FleetConfig",
    "FleetRollout",
    "HarderProblems",
    "HorizonTooShort",
    "Incident",
    "Misrouting",
    "ModelSpec",
    "NewTenant",
    "PassExplosion",
    "ReasoningInflation",
    "Route",
    "RouteTrial",
    "Router",
    "RunawayGeneration",
    "Scenario",
    "Server",
    "Tenant",
    "VolumeSpike",
    "build_fleet",
    "collect",
    "decode_labels",
    "default_suite",
    "diurnal",
    "encode_labels",
    "iter_events",
    "labels_for",
    "load_labels",
    "make_scenario",
    "paced",
    "planted_budget_burn",
    "planted_misrouting",
    "save_labels",
    "simulate",
    "write_jsonl",
]
