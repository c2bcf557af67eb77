"""Where an allocation event's fields come from in a GenAI span: the mapping file (TOML).

Both generations of GenAI attributes (``gen_ai.usage.input_tokens`` and the older
``gen_ai.usage.prompt_tokens``) are read without configuration; the mapping says where the
fields OpenTelemetry has no convention for come from (tenant, api key, route, server, passes,
confidence, difficulty) and how GPU time is derived when a span does not carry it. Each field
lists attribute names, tried in order: ``span:NAME`` or ``resource:NAME`` look in one place, a
bare ``NAME`` in the span first, then its resource; ``default`` applies when none is present.
A field given in the file replaces that field's defaults; the rest keep theirs.

>>> mapping = load_mapping_text('''
... [tenant_id]
... attributes = ["resource:k8s.namespace.name"]
... default = "shared"
... [gpu_ms.gpus_per_replica_by_model]
... "meta-llama/Llama-3.1-70B-Instruct" = 4
... ''')
>>> mapping.tenant_id.attributes, mapping.api_key_id.default
(('resource:k8s.namespace.name',), 'unknown')
>>> mapping.gpu_ms.gpus_for("meta-llama/Llama-3.1-70B-Instruct"), mapping.gpu_ms.gpus_for("x")
(4.0, 1.0)
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextField(_Strict):
    """A string field (tenant, api key, route, server): attributes tried in order, a default."""

    attributes: tuple[str, ...]  # a tuple: spans look names up by it (hashable, cached)
    default: str = Field(min_length=1)


class NumberField(_Strict):
    """A numeric field (passes, confidence, difficulty): attributes tried in order, a default."""

    attributes: tuple[str, ...]
    default: float | None = None


class GpuTime(_Strict):
    """How ``gpu_ms`` is found: a millisecond attribute as is; else a seconds attribute (e.g.
    vLLM's ``gen_ai.latency.time_in_model_inference``) × GPUs per replica; else, when
    ``from_duration``, the span's duration × GPUs per replica; else 0."""

    ms_attributes: tuple[str, ...] = ("computewatch.gpu_ms",)
    seconds_attributes: tuple[str, ...] = ("gen_ai.latency.time_in_model_inference",)
    from_duration: bool = True
    gpus_per_replica: float = Field(1.0, gt=0)
    gpus_per_replica_by_model: dict[str, float] = {}

    def gpus_for(self, model: str) -> float:
        return float(self.gpus_per_replica_by_model.get(model, self.gpus_per_replica))


class SpanMapping(_Strict):
    """The whole mapping; ``SpanMapping()`` is the default used without a file."""

    tenant_id: TextField = TextField(
        attributes=["computewatch.tenant_id", "tenant.id"], default="default"
    )
    api_key_id: TextField = TextField(attributes=["computewatch.api_key_id"], default="unknown")
    route: TextField = TextField(
        attributes=["computewatch.route", "gen_ai.operation.name"], default="default"
    )
    server_id: TextField = TextField(
        attributes=[
            "computewatch.server_id", "host.name", "service.instance.id", "server.address",
            "service.name",
        ],
        default="unknown",
    )  # fmt: skip
    passes: NumberField = NumberField(
        attributes=["computewatch.passes", "gen_ai.usage.num_sequences"], default=1
    )
    confidence: NumberField = NumberField(attributes=["computewatch.confidence"])
    difficulty: NumberField = NumberField(attributes=["computewatch.difficulty"])
    gpu_ms: GpuTime = GpuTime()


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the problem."""


def load_mapping_text(text: str, source: str = "mapping") -> SpanMapping:
    """The mapping in TOML ``text``; raises :class:`MappingError` in one line."""
    try:
        return SpanMapping.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{source} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise MappingError(f"{source}: {problems}") from None


def load_mapping(path: Path | None) -> SpanMapping:
    """The mapping in the TOML file at ``path``; the default mapping when ``path`` is None."""
    if path is None:
        return SpanMapping()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise MappingError(f"cannot read mapping file {path}: {reason}") from None
    return load_mapping_text(text, str(path))
