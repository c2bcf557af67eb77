"""The request model, vectorised: from arrivals to tokens, status, GPU-ms, latency and confidence.

A :class:`Block` holds the columns of many requests. All random variates a request needs are
drawn up front with fixed shapes (:func:`draw_block`), and every later step is a deterministic
transform of them, so a scenario that changes one step (say, difficulty) leaves the noise of all
other requests, and of the other steps, untouched. :func:`realise` runs the steps and calls a
``hook(stage, block)`` after each, which is where scenarios act:

``difficulty`` → ``plan`` (route, budget, passes) → ``tokens`` → ``cost`` → ``confidence``.

>>> import numpy as np
>>> from pipeline.simulate.fleet import FleetConfig, build_fleet
>>> from pipeline.simulate.router import Router
>>> fleet = build_fleet(FleetConfig(tenants=3, rate=5.0))
>>> rng = np.random.default_rng(0)
>>> block = draw_block(rng, np.array([0, 0, 1]), np.array([10, 20, 30]), fleet)
>>> realise(block, fleet, Router())
>>> len(block), bool((block.gpu_ms > 0).all()), bool((block.passes >= 1).all())
(3, True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from pipeline.simulate.fleet import Fleet, FloatArray, IntArray
from pipeline.simulate.router import MAX_EXTRA_PASSES, Router

Stage = Literal["difficulty", "plan", "tokens", "cost", "confidence"]
StageHook = Callable[[Stage, "Block"], None]

OK, TRUNCATED, TIMEOUT, ERROR, CANCELLED = 0, 1, 2, 3, 4
NOT_FORCED: Final = -1
P_ERROR: Final = 0.0008
P_CANCELLED: Final = 0.0025
P_STRUGGLE: Final = 0.02
"""Base rates: server errors, client cancellations, and requests that think far too long."""

# rows of Block.z (standard normal) and Block.u (uniform) noise
Z_DIFFICULTY, Z_PROMPT, Z_COMPLETION, Z_REASONING, Z_GPU, Z_QUEUE, Z_LATENCY, Z_CONF = range(8)
U_MODEL, U_SERVER, U_STRUGGLE, U_STATUS, U_PARTIAL, U_KEEP = range(6)
U_PASSES: Final = slice(6, 6 + MAX_EXTRA_PASSES)
N_Z, N_U = 8, 6 + MAX_EXTRA_PASSES


def _f() -> FloatArray:
    return np.empty(0)


def _i() -> IntArray:
    return np.empty(0, dtype=np.int64)


@dataclass(slots=True, eq=False)
class Block:
    """Column arrays of ``n`` requests. ``z``/``u`` are ``(k, n)`` noise; ``uid`` is ``(n, 16)``.

    ``eff_reasoning`` / ``eff_passes`` are the compute that actually helps the answer (decoy
    reasoning and runaway passes do not); ``forced`` is a status a scenario imposes (or -1);
    ``slowdown`` multiplies a request's GPU-ms and decode time. ``given_prompt`` and
    ``given_completion`` are token counts a recorded trace fixed (NaN: drawn by the model).
    NaN means null.
    """

    ts: IntArray
    key: IntArray
    tenant: IntArray
    z: FloatArray
    u: FloatArray
    uid: NDArray[np.uint8]
    given_prompt: FloatArray
    given_completion: FloatArray
    model: IntArray = field(default_factory=_i)
    server: IntArray = field(default_factory=_i)
    prompt: IntArray = field(default_factory=_i)
    difficulty: FloatArray = field(default_factory=_f)
    route: IntArray = field(default_factory=_i)
    budget: IntArray = field(default_factory=_i)
    passes: IntArray = field(default_factory=_i)
    eff_passes: IntArray = field(default_factory=_i)
    reasoning: FloatArray = field(default_factory=_f)
    eff_reasoning: FloatArray = field(default_factory=_f)
    completion: FloatArray = field(default_factory=_f)
    forced: IntArray = field(default_factory=_i)
    slowdown: FloatArray = field(default_factory=_f)
    status: IntArray = field(default_factory=_i)
    gpu_ms: FloatArray = field(default_factory=_f)
    latency: FloatArray = field(default_factory=_f)
    ttft: FloatArray = field(default_factory=_f)
    confidence: FloatArray = field(default_factory=_f)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, index: NDArray[np.int64] | NDArray[np.bool_]) -> Block:
        """A new block with the rows selected by ``index`` (positions or a mask)."""
        n = len(self)
        out = {}
        for f in fields(self):
            arr = getattr(self, f.name)
            if f.name in ("z", "u"):
                out[f.name] = arr[:, index]
            elif arr.shape[0] == n:
                out[f.name] = arr[index]
            else:  # a column not computed yet
                out[f.name] = arr
        return Block(**out)

    @staticmethod
    def concat(blocks: Sequence[Block]) -> Block:
        """Rows of all ``blocks`` (all realised to the same stage), in order."""
        if len(blocks) == 1:
            return blocks[0]
        out = {}
        for f in fields(Block):
            axis = 1 if f.name in ("z", "u") else 0
            out[f.name] = np.concatenate([getattr(b, f.name) for b in blocks], axis=axis)
        return Block(**out)


def draw_block(
    rng: np.random.Generator,
    key: IntArray,
    ts: IntArray,
    fleet: Fleet,
    tokens: tuple[FloatArray, FloatArray] | None = None,
) -> Block:
    """Arrivals (api key index and epoch-ms time per request) plus all their noise and ids;
    ``tokens`` are the (prompt, completion) counts a trace fixed (NaN where it did not)."""
    n = len(key)
    unknown = np.full(n, np.nan)
    uid = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    key = np.asarray(key, dtype=np.int64)
    return Block(
        ts=np.asarray(ts, dtype=np.int64),
        key=key,
        tenant=fleet.arrays.key_tenant[key],
        z=rng.standard_normal((N_Z, n)),
        u=rng.random((N_U, n)),
        uid=uid,
        given_prompt=unknown if tokens is None else tokens[0],
        given_completion=unknown.copy() if tokens is None else tokens[1],
    )


def realise(block: Block, fleet: Fleet, router: Router, hook: StageHook | None = None) -> None:
    """Compute every column of ``block`` in place, calling ``hook`` after each stage."""
    call: StageHook = hook or (lambda stage, b: None)
    _assign(block, fleet)
    call("difficulty", block)
    block.route = router.route(block.difficulty)
    block.budget = router.budget[block.route]
    block.passes = router.passes(block.route, block.difficulty, block.u[U_PASSES])
    block.eff_passes = block.passes.copy()
    call("plan", block)
    _tokens(block, fleet)
    call("tokens", block)
    _truncate(block)
    block.slowdown = np.ones(len(block))
    call("cost", block)
    _cost_and_latency(block, fleet)
    _confidence(block, fleet)
    call("confidence", block)


def _assign(b: Block, fleet: Fleet) -> None:
    """Model (from the tenant's mix), server (load-balanced), prompt length, difficulty."""
    a = fleet.arrays
    b.model = (b.u[U_MODEL][:, None] > a.tenant_mix[b.tenant]).sum(axis=1).astype(np.int64)
    b.server = a.model_first_server[b.model] + (b.u[U_SERVER] * a.model_servers[b.model]).astype(
        np.int64
    )
    drawn = np.round(a.tenant_prompt[b.tenant] * np.exp(0.6 * b.z[Z_PROMPT]))
    b.prompt = np.where(np.isnan(b.given_prompt), drawn, b.given_prompt).astype(np.int64)
    logit = a.tenant_difficulty_logit[b.tenant] + 0.9 * b.z[Z_DIFFICULTY]
    b.difficulty = np.round(1.0 / (1.0 + np.exp(-logit)), 3)


def _tokens(b: Block, fleet: Fleet) -> None:
    """Reasoning grows with budget and difficulty (lognormal noise, a rare struggling tail)."""
    a = fleet.arrays
    struggle = np.where(b.u[U_STRUGGLE] < P_STRUGGLE, 5.0, 1.0)
    share = (0.05 + 0.22 * b.difficulty) * np.exp(0.45 * b.z[Z_REASONING] - 0.1) * struggle
    b.reasoning = np.floor(a.model_reasoning[b.model] * b.budget * share)
    b.eff_reasoning = b.reasoning.copy()
    drawn = np.floor(a.tenant_completion[b.tenant] * np.exp(0.5 * b.z[Z_COMPLETION]))
    b.completion = np.where(np.isnan(b.given_completion), drawn, b.given_completion)
    b.forced = np.full(len(b), NOT_FORCED, dtype=np.int64)


def _truncate(b: Block) -> None:
    """Requests whose output exceeds the budget stop at it: status truncated."""
    over = (b.reasoning + b.completion > b.budget) | (b.forced == TRUNCATED)
    b.reasoning = np.minimum(b.reasoning, b.budget)
    b.completion = np.where(over, b.budget - b.reasoning, b.completion)
    b.eff_reasoning = np.minimum(b.eff_reasoning, b.reasoning)
    status = np.where(over, TRUNCATED, OK)
    status = np.where(b.u[U_STATUS] < P_ERROR + P_CANCELLED, CANCELLED, status)
    b.status = np.where(b.u[U_STATUS] < P_ERROR, ERROR, status).astype(np.int64)
    b.status = np.where(b.forced == TIMEOUT, TIMEOUT, b.status)


def _cost_and_latency(b: Block, fleet: Fleet) -> None:
    """GPU-ms from tokens × passes × server speed; latency and TTFT; timeouts, errors, cancels."""
    a = fleet.arrays
    wall = a.model_wall[b.model] * b.slowdown
    speed = a.server_speed[b.server] * b.slowdown
    limit = fleet.config.timeout_ms
    b.ttft = 35.0 * np.exp(0.9 * b.z[Z_QUEUE]) + b.prompt * wall * 0.02
    parallel = 1 + 0.25 * np.log2(b.passes)  # passes run mostly side by side
    per_token = wall * parallel * np.exp(0.12 * b.z[Z_LATENCY])
    decode_ms = (b.reasoning + b.completion) * per_token
    natural = b.ttft + decode_ms > limit
    kept = np.where(natural, np.clip((limit - b.ttft) / np.maximum(decode_ms, 1.0), 0, 1), 1.0)
    part = b.u[U_PARTIAL]
    kept = np.where((b.status == ERROR) | (b.status == CANCELLED), part, kept)
    b.reasoning = np.floor(b.reasoning * kept)
    b.completion = np.where(b.status == ERROR, 0.0, np.floor(b.completion * kept))
    b.eff_reasoning = np.minimum(b.eff_reasoning, b.reasoning)
    b.status = np.where(natural & (b.status <= TRUNCATED), TIMEOUT, b.status)
    latency = b.ttft + decode_ms * kept
    b.latency = np.where(b.status == TIMEOUT, limit * (1 + 0.01 * part), latency)
    generated = b.reasoning + b.completion
    work = b.prompt * a.model_prefill[b.model] + generated * a.model_decode[b.model] * b.passes
    b.gpu_ms = work * speed * np.exp(0.08 * b.z[Z_GPU])
    b.ttft = np.where(b.status == ERROR, np.nan, b.ttft)


def _confidence(b: Block, fleet: Fleet) -> None:
    """Confidence rises with useful compute, with diminishing returns; null without an answer."""
    quality = fleet.arrays.model_quality[b.model]
    effort = b.eff_reasoning * np.sqrt(b.eff_passes) + 0.2 * b.completion
    need = 250.0 + 6000.0 * b.difficulty**2
    conf = quality * (1 - 0.8 * b.difficulty * np.exp(-effort / need)) + 0.035 * b.z[Z_CONF]
    conf = np.where(b.status == TRUNCATED, conf * 0.75, conf)
    b.confidence = np.where(b.status >= TIMEOUT, np.nan, np.clip(conf, 0.01, 0.999))
