"""The simulated fleet: tenants of skewed sizes, their api keys, models, and servers per model.

A :class:`Fleet` is built deterministically from a :class:`FleetConfig` (its ``seed``). Tenant
sizes follow a Zipf law perturbed by lognormal noise, so a few tenants carry most traffic and a
long tail sends a few requests a minute. Every tenant has its own daily cycle (a cosine peaking
near ``peak_hour`` UTC), its own difficulty level, prompt and answer lengths and model mix.

>>> fleet = build_fleet(FleetConfig(tenants=5, rate=10.0, seed=1))
>>> len(fleet.tenants), fleet.tenants[0].id
(5, 'tenant-01')
>>> round(sum(k.rate for k in fleet.keys), 6)
10.0
>>> sorted({s.model for s in fleet.servers}) == list(range(len(fleet.models)))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Final

import numpy as np
from numpy.typing import NDArray

REGIONS: Final = ("us-east-1", "eu-west-1", "ap-southeast-1")
GPU_SLOWDOWN: Final = {"H100": 1.0, "A100": 1.35, "L40S": 1.6, "L4": 1.8}
"""GPU-ms per token of each GPU type relative to an H100."""

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One served model: its cost and speed per token, reasoning habit and deployment.

    ``decode_gpu_ms`` and ``prefill_gpu_ms`` are GPU-ms per generated / prompt token and pass on
    an H100; ``wall_ms_per_token`` drives latency. ``reasoning_scale`` is 0 for a model that does
    not reason. ``quality`` is the confidence it reaches with ample compute.
    """

    name: str
    decode_gpu_ms: float
    prefill_gpu_ms: float
    wall_ms_per_token: float
    reasoning_scale: float
    quality: float
    servers: int
    gpu_types: tuple[str, ...]
    popularity: float


DEFAULT_MODELS: Final = (
    ModelSpec("reasoner-large", 0.55, 0.020, 22.0, 1.0, 0.95, 6, ("H100",), 0.35),
    ModelSpec("reasoner-medium", 0.28, 0.010, 14.0, 0.8, 0.90, 5, ("H100", "A100"), 0.30),
    ModelSpec("reasoner-small", 0.12, 0.005, 8.0, 0.6, 0.85, 4, ("A100", "L40S"), 0.25),
    ModelSpec("chat-lite", 0.06, 0.003, 6.0, 0.0, 0.80, 3, ("L4",), 0.10),
)


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    """Everything that shapes a simulated fleet and its traffic; deterministic for ``seed``.

    ``rate`` is the fleet-wide mean request rate per second (over a day); ``hours`` the length of
    the simulated period from ``start`` (timezone-aware). ``chunk_seconds`` is the vectorisation
    step. ``jitter_ms`` > 0 delivers events slightly out of ``ts`` order, as real servers do.
    """

    tenants: int = 30
    rate: float = 25.0
    hours: float = 24.0
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    seed: int = 0
    models: tuple[ModelSpec, ...] = DEFAULT_MODELS
    diurnal_amplitude: float = 0.45
    peak_hour: float = 15.0
    zipf_exponent: float = 1.0
    chunk_seconds: int = 60
    timeout_ms: float = 300_000.0
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.tenants < 1 or self.rate <= 0 or self.hours <= 0:
            raise ValueError("tenants >= 1, rate > 0 and hours > 0 are required")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if not 0 <= self.diurnal_amplitude < 1:
            raise ValueError("diurnal_amplitude must be in [0, 1)")
        if self.seed < 0 or self.chunk_seconds < 1 or self.jitter_ms < 0:
            raise ValueError("seed >= 0, chunk_seconds >= 1 and jitter_ms >= 0 are required")
        if not self.models or any(m.servers < 1 for m in self.models):
            raise ValueError("at least one model, each with at least one server, is required")

    @property
    def start_ms(self) -> int:
        """Start as epoch milliseconds."""
        return round(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        """End (exclusive) as epoch milliseconds."""
        return self.start_ms + round(self.hours * 3_600_000)


@dataclass(frozen=True, slots=True)
class Tenant:
    """A customer: share of fleet traffic and the shape of its requests."""

    id: str
    share: float
    difficulty: float
    prompt_median: float
    completion_median: float
    peak_hour: float
    model_weights: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An api key of a tenant (``tenant`` is its index); ``rate`` is its mean requests/s."""

    id: str
    tenant: int
    rate: float


@dataclass(frozen=True, slots=True)
class Server:
    """One inference server of a model (``model`` is its index); ``speed`` scales GPU-ms."""

    id: str
    model: int
    gpu_type: str
    region: str
    speed: float


@dataclass(frozen=True, eq=False)
class Fleet:
    """A built fleet plus column arrays for vectorised lookups (index = position in the tuple)."""

    config: FleetConfig
    tenants: tuple[Tenant, ...]
    keys: tuple[ApiKey, ...]
    models: tuple[ModelSpec, ...]
    servers: tuple[Server, ...]
    _index: dict[tuple[str, str], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index = {("tenant", t.id): i for i, t in enumerate(self.tenants)}
        index.update({("api_key", k.id): i for i, k in enumerate(self.keys)})
        index.update({("model", m.name): i for i, m in enumerate(self.models)})
        index.update({("server", s.id): i for i, s in enumerate(self.servers)})
        object.__setattr__(self, "_index", index)

    def index(self, entity_type: str, entity_id: str) -> int:
        """Position of an entity by type and id; raise ``KeyError`` naming it if unknown."""
        try:
            return self._index[(entity_type, entity_id)]
        except KeyError:
            raise KeyError(f"unknown {entity_type}: {entity_id!r}") from None

    @cached_property
    def arrays(self) -> FleetArrays:
        """Per-entity attributes as arrays indexed like the tuples (built once)."""
        return FleetArrays.of(self)

    def key_rates(self, t_ms: float) -> FloatArray:
        """Each key's expected requests/s at event time ``t_ms`` (its tenant's daily cycle)."""
        hour = (t_ms / 3_600_000.0) % 24.0
        a = self.arrays
        return a.key_rate * diurnal(hour, a.key_peak, self.config.diurnal_amplitude)

    def key_rate(self, key: int, t_ms: float) -> float:
        """Expected requests/s of one key at ``t_ms``."""
        k = self.keys[key]
        hour = (t_ms / 3_600_000.0) % 24.0
        peak = self.tenants[k.tenant].peak_hour
        return float(k.rate * diurnal(hour, peak, self.config.diurnal_amplitude))

    def servers_of(self, model: int) -> list[int]:
        """Indices of the servers serving ``model``."""
        return [i for i, s in enumerate(self.servers) if s.model == model]


@dataclass(frozen=True, eq=False)
class FleetArrays:
    """Lookup arrays for vectorised generation (see :class:`Fleet`, :class:`ModelSpec`)."""

    key_tenant: IntArray
    key_rate: FloatArray
    key_peak: FloatArray
    tenant_mix: FloatArray  # (tenants, models - 1) cumulative model weights
    tenant_difficulty_logit: FloatArray
    tenant_prompt: FloatArray
    tenant_completion: FloatArray
    model_first_server: IntArray
    model_servers: IntArray
    model_decode: FloatArray
    model_prefill: FloatArray
    model_wall: FloatArray
    model_reasoning: FloatArray
    model_quality: FloatArray
    server_speed: FloatArray

    @classmethod
    def of(cls, fleet: Fleet) -> FleetArrays:
        t, m = fleet.tenants, fleet.models
        level = np.array([x.difficulty for x in t])
        return cls(
            key_tenant=np.array([k.tenant for k in fleet.keys], dtype=np.int64),
            key_rate=np.array([k.rate for k in fleet.keys]),
            key_peak=np.array([t[k.tenant].peak_hour for k in fleet.keys]),
            tenant_mix=np.cumsum([x.model_weights for x in t], axis=1)[:, :-1],
            tenant_difficulty_logit=np.log(level / (1 - level)),
            tenant_prompt=np.array([x.prompt_median for x in t]),
            tenant_completion=np.array([x.completion_median for x in t]),
            model_first_server=np.array([fleet.servers_of(i)[0] for i in range(len(m))]),
            model_servers=np.array([x.servers for x in m], dtype=np.int64),
            model_decode=np.array([x.decode_gpu_ms for x in m]),
            model_prefill=np.array([x.prefill_gpu_ms for x in m]),
            model_wall=np.array([x.wall_ms_per_token for x in m]),
            model_reasoning=np.array([x.reasoning_scale for x in m]),
            model_quality=np.array([x.quality for x in m]),
            server_speed=np.array([s.speed for s in fleet.servers]),
        )


def diurnal(hour: float | FloatArray, peak: float | FloatArray, amplitude: float) -> FloatArray:
    """Daily load factor (mean 1 over a day) at UTC ``hour`` for a cycle peaking at ``peak``.

    >>> float(diurnal(15.0, 15.0, 0.4)), float(diurnal(3.0, 15.0, 0.4))
    (1.4, 0.6)
    """
    return np.asarray(1.0 + amplitude * np.cos(2 * math.pi * (np.asarray(hour) - peak) / 24.0))


def build_fleet(config: FleetConfig) -> Fleet:
    """Draw tenants, keys and servers from ``config.seed`` (the same config, the same fleet).

    Examples
    --------
    >>> fleet = build_fleet(FleetConfig(tenants=2, seed=4))
    >>> [s.id for s in fleet.servers][:2], fleet.servers[0].gpu_type
    (['reasoner-large-01', 'reasoner-large-02'], 'H100')
    """
    rng = np.random.default_rng([config.seed, 0])
    shares = _tenant_shares(rng, config.tenants, config.zipf_exponent)
    popularity = np.array([m.popularity for m in config.models])
    tenants, keys = [], []
    for i, share in enumerate(shares):
        weights = rng.dirichlet(popularity / popularity.sum() * 4.0)
        tenants.append(
            Tenant(
                id=f"tenant-{i + 1:02d}",
                share=float(share),
                difficulty=float(rng.uniform(0.22, 0.55)),
                prompt_median=float(10 ** rng.uniform(2.3, 3.3)),
                completion_median=float(rng.uniform(120.0, 600.0)),
                peak_hour=float(config.peak_hour + rng.normal(0.0, 1.5)) % 24.0,
                model_weights=tuple(float(w) for w in weights),
            )
        )
        n_keys = int(np.clip(1 + math.floor(math.log2(1 + 40 * share)), 1, 6))
        key_shares = rng.dirichlet(np.full(n_keys, 1.2))
        for ks in key_shares:
            keys.append(ApiKey(f"ak-{rng.bytes(6).hex()}", i, float(config.rate * share * ks)))
    servers = _servers(rng, config.models)
    return Fleet(config, tuple(tenants), tuple(keys), config.models, servers)


def _tenant_shares(rng: np.random.Generator, n: int, exponent: float) -> FloatArray:
    """Zipf shares, lognormally perturbed, largest first, summing to 1."""
    raw = np.arange(1, n + 1, dtype=float) ** -exponent * rng.lognormal(0.0, 0.3, n)
    shares: FloatArray = np.sort(raw)[::-1] / raw.sum()
    return shares


def _servers(rng: np.random.Generator, models: tuple[ModelSpec, ...]) -> tuple[Server, ...]:
    servers = []
    for m, spec in enumerate(models):
        for j in range(spec.servers):
            gpu = spec.gpu_types[j % len(spec.gpu_types)]
            speed = GPU_SLOWDOWN.get(gpu, 1.0) * float(rng.lognormal(0.0, 0.06))
            region = REGIONS[j % len(REGIONS)]
            servers.append(Server(f"{spec.name}-{j + 1:02d}", m, gpu, region, speed))
    return tuple(servers)
