"""The bytes of a worker snapshot: a header that names the format version, then the state.

A stage-1 engine (:meth:`Engine.snapshot <pipeline.engine.Engine.snapshot>`) and the fleet
stage (:meth:`FleetStage.snapshot <pipeline.fleet.FleetStage.snapshot>`) save their state as
``computewatch-state <version>\\n`` and a pickle of it. Format 1 is the pickle the code wrote
before formats were numbered, under the header; a snapshot without the header is format 0,
which restore migrates as it always has. A snapshot of a newer format, or bytes that are no
snapshot, are refused with a :class:`SnapshotError` that says what to do.

>>> from pipeline.config import Settings
>>> settings = Settings()
>>> blob = seal({"clock_s": 60.0})
>>> blob[:19], unseal(blob, settings, dict)
(b'computewatch-state ', (1, {'clock_s': 60.0}))
>>> import textwrap
>>> try:
...     unseal(b"computewatch-state 9\\n...", settings, dict)
... except SnapshotError as exc:
...     print(textwrap.fill(str(exc), 96))
snapshot format 9 is newer than this computewatch knows (1): upgrade computewatch, or start
consumer group 'computewatch' from scratch: stop its workers, run DELETE FROM engine_state WHERE
startsWith(state_key, 'computewatch/') and start them again (they resume at the group's
committed offsets with nothing learned)
"""

from __future__ import annotations

import pickle
from typing import Final, TypeVar

from pipeline.config import Settings

FORMAT: Final = 1  # the format this code writes; it reads this one and those before it
HEADER: Final = b"computewatch-state "  # then the format's number and a newline
_PICKLE: Final = b"\x80"  # how a format-0 snapshot begins (pickle protocol 2 or later)
T = TypeVar("T")


class SnapshotError(ValueError):
    """A snapshot this computewatch cannot restore; the message says what to do."""


def seal(state: object) -> bytes:
    """``state`` as a snapshot of the current :data:`FORMAT`."""
    return HEADER + b"%d\n" % FORMAT + pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def unseal(blob: bytes, settings: Settings, kind: type[T]) -> tuple[int, T]:
    """The format and the state of a snapshot whose state is a ``kind`` (format 0: none saved;
    the caller migrates it). ``settings`` name the consumer group whose state a refusal tells
    the operator to reset.
    """
    version, payload = _format_of(blob, settings)
    try:
        state = pickle.loads(payload)
    except Exception as exc:  # any damage shows as some error of the unpickler
        raise SnapshotError(
            f"a snapshot of format {version} cannot be read ({type(exc).__name__}: "
            f"{str(exc)[:80]}); {start_afresh(settings)}"
        ) from None
    if not isinstance(state, kind):
        raise SnapshotError(
            f"a snapshot of a {type(state).__name__}, not of a {kind.__name__}; "
            f"{start_afresh(settings)}"
        )
    return version, state


def _format_of(blob: bytes, settings: Settings) -> tuple[int, bytes]:
    """The format a snapshot says it has, and its state's bytes."""
    if blob.startswith(_PICKLE):
        return 0, blob
    line, newline, payload = blob.partition(b"\n")
    number = line.removeprefix(HEADER)
    if not (line.startswith(HEADER) and newline and number.isdigit()):
        raise SnapshotError(
            f"not a computewatch snapshot (it begins {blob[:20]!r}); {start_afresh(settings)}"
        )
    version = int(number)
    if version > FORMAT:
        raise SnapshotError(
            f"snapshot format {version} is newer than this computewatch knows ({FORMAT}): "
            f"upgrade computewatch, or {start_afresh(settings)}"
        )
    return version, payload


def start_afresh(settings: Settings) -> str:
    """How an operator starts the consumer group's state from scratch: the worker keeps its
    snapshots in ``engine_state`` under keys that begin with the group's name."""
    group = settings.kafka.consumer_group
    return (
        f"start consumer group {group!r} from scratch: stop its workers, run DELETE FROM "
        f"engine_state WHERE startsWith(state_key, '{group}/') and start them again (they "
        "resume at the group's committed offsets with nothing learned)"
    )
