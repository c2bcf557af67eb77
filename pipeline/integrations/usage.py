"""OpenAI-style results to allocation-event fields: one call for Chat Completions and Responses.

Both APIs count hidden reasoning inside the output tokens; the contract keeps them apart
(``completion_tokens`` is the visible output), so reasoning is subtracted. A result may be the
SDK's object or a plain dict.

>>> chat = {"model": "o4-mini", "choices": [{"finish_reason": "length"}],
...         "usage": {"prompt_tokens": 120, "completion_tokens": 900,
...                   "completion_tokens_details": {"reasoning_tokens": 700},
...                   "prompt_tokens_details": {"cached_tokens": 64}}}
>>> usage_fields(chat)
{'model': 'o4-mini', 'prompt_tokens': 120, 'completion_tokens': 200, 'reasoning_tokens': 700, \
'passes': 1, 'status': 'truncated'}
>>> responses = {"model": "o3", "status": "completed",
...              "usage": {"input_tokens": 50, "output_tokens": 400,
...                        "output_tokens_details": {"reasoning_tokens": 350}}}
>>> usage_fields(responses)
{'model': 'o3', 'prompt_tokens': 50, 'completion_tokens': 50, 'reasoning_tokens': 350, \
'passes': 1, 'status': 'ok'}

Cached prompt tokens have no field in contract v1 and are not carried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

_TRUNCATED: Final = frozenset({"length", "max_tokens", "max_output_tokens"})


def field_of(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` for an object; ``None`` when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(obj: Any, *path: str) -> int:
    """The non-negative integer at ``path`` inside ``obj``; 0 when absent or null."""
    for name in path:
        obj = field_of(obj, name)
    if obj is None:
        return 0
    if isinstance(obj, bool) or not isinstance(obj, int) or obj < 0:
        raise ValueError(f"usage.{'.'.join(path)} is not a non-negative integer")
    return obj


def token_fields(usage: Any) -> dict[str, int]:
    """Prompt, visible completion and reasoning tokens of a Chat Completions or Responses usage.

    >>> token_fields({"input_tokens": 5, "output_tokens": 9})
    {'prompt_tokens': 5, 'completion_tokens': 9, 'reasoning_tokens': 0}
    """
    if field_of(usage, "input_tokens") is not None:  # Responses API
        prompt, output = _count(usage, "input_tokens"), _count(usage, "output_tokens")
        reasoning = _count(usage, "output_tokens_details", "reasoning_tokens")
    else:  # Chat Completions
        prompt, output = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
        reasoning = _count(usage, "completion_tokens_details", "reasoning_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": max(output - reasoning, 0),
        "reasoning_tokens": reasoning,
    }


def finish_status(result: Any) -> str:
    """``truncated`` when a choice stopped at its token limit (or a response is incomplete
    for want of output tokens), else ``ok``."""
    choices = field_of(result, "choices") or ()
    reasons = {field_of(choice, "finish_reason") for choice in choices}
    incomplete = field_of(field_of(result, "incomplete_details"), "reason")
    return "truncated" if reasons & _TRUNCATED or incomplete in _TRUNCATED else "ok"


def usage_fields(result: Any) -> dict[str, Any]:
    """The event fields a Chat Completions or Responses result tells: model, tokens, passes
    (the number of choices, ``n``) and status. Raises ``ValueError`` for a result without
    ``usage`` or with a count that is not a non-negative integer."""
    usage = field_of(result, "usage")
    if usage is None:
        raise ValueError("the result has no usage (streaming? set stream_options.include_usage)")
    fields: dict[str, Any] = {}
    if model := field_of(result, "model"):
        fields["model"] = model
    fields.update(token_fields(usage))
    fields["passes"] = max(len(field_of(result, "choices") or ()), 1)
    fields["status"] = finish_status(result)
    return fields
