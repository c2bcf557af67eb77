"""Exceptions raised by the storage package: the sinks' and those that say a store is unusable."""

from __future__ import annotations

from typing import Final

__all__ = [
    "FILL_STORE_FIRST",
    "SinkBackpressure",
    "SinkUnavailable",
    "StoreNotFound",
    "StoreUnavailable",
]

FILL_STORE_FIRST: Final = (
    "run `computewatch migrate`, or `computewatch replay --events FILE --store` to load events, "
    "first"
)
"""What a reader of a store that was never set up should be told to do."""


class SinkBackpressure(RuntimeError):
    """The buffer is full and ClickHouse is not taking writes: the item was NOT accepted."""

    def __init__(self, buffered_rows: int, retry_after_s: float) -> None:
        super().__init__(
            f"ClickHouse sink buffer full ({buffered_rows} rows); pause and retry in "
            f"{retry_after_s:.2f}s"
        )
        self.buffered_rows = buffered_rows
        self.retry_after_s = retry_after_s


class SinkUnavailable(RuntimeError):
    """A flush gave up after its retries; the rows are still buffered and will be retried."""


class StoreUnavailable(RuntimeError):
    """ClickHouse cannot be reached, or another process holds the embedded store's directory."""


class StoreNotFound(LookupError):
    """A reader named a store that does not exist: an embedded store's directory (nothing is
    created) or the database."""
