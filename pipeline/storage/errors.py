"""Exceptions raised by the storage package's sinks."""

from __future__ import annotations

__all__ = ["SinkBackpressure", "SinkUnavailable"]


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
