"""The OTLP/HTTP receiver: ``POST /v1/traces`` -> GenAI spans -> allocation events on Kafka.

Thin wiring around the pure parts (:mod:`~pipeline.ingest.otlp` decodes,
:mod:`~pipeline.ingest.batch` maps, :mod:`~pipeline.ingest.sink` delivers). Answers, as the
OTLP/HTTP specification asks:

- 200 with an ``ExportTraceServiceResponse``; its ``partial_success`` says how many GenAI spans
  were rejected and why (they went to the dead-letter topic); non-GenAI spans are skipped;
- 400 for a body that is not an export request, 401 for a missing or wrong bearer token,
  413 for a body or a span count over the limits, 415 for an unknown Content-Type or encoding,
  503 (retryable, ``Retry-After``) when Kafka did not take the batch;
  each with a ``google.rpc.Status`` whose message says what to do.

Logs carry counts and reasons (attribute names), never attribute values or the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from aiohttp import web

from pipeline.config import IngestSettings
from pipeline.ingest.batch import MappedBatch, map_request
from pipeline.ingest.mapping import SpanMapping
from pipeline.ingest.otlp import (
    JSON,
    PROTOBUF,
    BadRequest,
    decode_request,
    error_body,
    export_response,
    span_count,
)
from pipeline.ingest.sink import DeliveryError, Sink
from pipeline.instruments import ReceiverInstruments

log = logging.getLogger(__name__)

TRACES_PATH: Final = "/v1/traces"
RETRY_AFTER_S: Final = "5"
# aiohttp server options: gzip is undone by the receiver itself, bounded by max_body_bytes (and
# an unknown Content-Encoding is refused), and the access log stays off.
SERVER_OPTIONS: Final[dict[str, Any]] = {"auto_decompress": False, "access_log": None}
# google.rpc.Code for each HTTP status the receiver answers with
_RPC_CODES: Final = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}

class Receiver:
    """Handles ``POST /v1/traces``: decodes and maps in a worker thread, then waits for the sink
    (Kafka's acknowledgement) on the event loop."""

    def __init__(
        self,
        settings: IngestSettings,
        mapping: SpanMapping,
        sink: Sink,
        instruments: ReceiverInstruments | None = None,
    ) -> None:
        self._settings, self._mapping, self._sink = settings, mapping, sink
        self._instruments = instruments
        token = settings.token.get_secret_value() if settings.token else None
        self._expected = f"Bearer {token}".encode() if token else None

    async def traces(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        response, batch = await self._answer(request)
        if self._instruments is not None:
            self._instruments.exported(response.status, batch, time.perf_counter() - started)
        return response

    async def _answer(self, request: web.Request) -> tuple[web.Response, MappedBatch | None]:
        """The answer to an export request, and the batch it delivered (None if refused)."""
        reply_type = JSON if request.content_type == JSON else PROTOBUF
        try:
            self._authorize(request)
            body = await self._read_body(request)
            encoding = request.headers.get("Content-Encoding")
            batch = await asyncio.get_running_loop().run_in_executor(
                None, self.map_body, body, request.content_type, encoding
            )
            await self._sink.deliver(batch)
        except BadRequest as exc:
            log.info("OTLP export refused (%d): %s", exc.status, exc.summary)
            return _error(exc.status, str(exc), reply_type), None
        except DeliveryError as exc:
            log.warning("OTLP export not delivered (503): %s", exc)
            return _error(503, f"{exc}; the exporter should retry", reply_type), None
        if batch.rejected:
            log.info("OTLP export: %s", batch.message())
        body = export_response(batch.rejected, batch.message(), reply_type)
        return web.Response(body=body, content_type=reply_type), batch

    def _authorize(self, request: web.Request) -> None:
        if self._expected is None:
            return
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            raise BadRequest(
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                "(OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>)",
                401,
            )

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._settings.max_body_bytes
        too_large = BadRequest(
            f"body is over the limit of {limit} bytes (COMPUTEWATCH_INGEST_MAX_BODY_BYTES): "
            "export smaller batches",
            413,
        )
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def map_body(self, body: bytes, content_type: str, encoding: str | None) -> MappedBatch:
        """Decode and map one export body (runs in a worker thread); raises BadRequest."""
        request = decode_request(
            body, content_type, encoding, max_bytes=self._settings.max_body_bytes
        )
        spans = span_count(request)
        if spans > self._settings.max_spans:
            raise BadRequest(
                f"{spans} spans in one request, over the limit of {self._settings.max_spans} "
                "(COMPUTEWATCH_INGEST_MAX_SPANS): lower the exporter's batch size "
                "(OTEL_BSP_MAX_EXPORT_BATCH_SIZE)",
                413,
            )
        return map_request(request, self._mapping)


def _error(status: int, message: str, content_type: str) -> web.Response:
    """A ``google.rpc.Status`` answer (503 says when to retry)."""
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    body = error_body(_RPC_CODES[status], message, content_type)
    return web.Response(status=status, body=body, content_type=content_type, headers=headers)


def create_app(
    settings: IngestSettings,
    mapping: SpanMapping,
    sink: Sink,
    instruments: ReceiverInstruments | None = None,
) -> web.Application:
    """The aiohttp application: ``POST /v1/traces`` only (other paths 404, methods 405); the
    sink starts and stops with it."""

    async def start(_app: web.Application) -> None:
        await sink.start()

    async def stop(_app: web.Application) -> None:
        await sink.stop()

    app = web.Application()
    app.router.add_post(TRACES_PATH, Receiver(settings, mapping, sink, instruments).traces)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


@contextlib.contextmanager
def receiving(
    settings: IngestSettings,
    mapping: SpanMapping,
    sink: Sink,
    instruments: ReceiverInstruments | None = None,
) -> Iterator[str]:
    """The receiver on its own event loop in a background thread (``computewatch demo`` runs
    it next to the dashboard); yields its URL (port 0 picks a free port)."""
    runner = web.AppRunner(create_app(settings, mapping, sink, instruments), **SERVER_OPTIONS)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, settings.host, settings.port).start())
    host, port = runner.addresses[0][:2]
    thread = threading.Thread(target=loop.run_forever, name="computewatch-otlp", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}{TRACES_PATH}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def run_receiver(
    settings: IngestSettings,
    mapping: SpanMapping,
    sink: Sink,
    *,
    instruments: ReceiverInstruments | None = None,
    ready: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve until SIGINT/SIGTERM (blocking); raises DeliveryError when Kafka is unreachable."""
    url = f"http://{settings.host}:{settings.port}{TRACES_PATH}"
    web.run_app(
        create_app(settings, mapping, sink, instruments), host=settings.host, port=settings.port,
        print=lambda _banner: ready(url), **SERVER_OPTIONS,
    )  # fmt: skip
