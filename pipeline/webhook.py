"""Optional alert webhook (Slack-compatible JSON), sent from a background thread.

``notify`` never blocks the stream: alerts wait in a bounded queue (the oldest are dropped and
counted when it is full) and are posted with retries and exponential backoff. Only alerts of
``min_severity`` or above are sent (``medium`` by default: ``low`` findings are stored and shown,
not paged); the others are counted in ``held_back``.

>>> from pipeline.alerts import at_least
>>> from pipeline.records import Alert, Severity
>>> notifier = WebhookNotifier(None)   # no URL configured: a no-op
>>> notifier.enabled
False
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Callable

import msgspec

from pipeline.alerts import at_least
from pipeline.records import Alert, Severity

log = logging.getLogger(__name__)

Post = Callable[[str, bytes, str], None]  # (url, body, idempotency key)


def slack_payload(alert: Alert) -> bytes:
    """Slack-compatible message: a one-line text plus the full alert as an attachment field."""
    text = f"[{alert.severity.upper()}] {alert.kind}: {alert.summary}"
    body = {"text": text, "alert": msgspec.to_builtins(alert)}
    return json.dumps(body).encode()


def _http_post(url: str, body: bytes, key: str) -> None:
    """POST ``body`` with ``Idempotency-Key: key``: an alert sent again (a retry, or raised
    again after a worker's restart) carries the same key, its ``alert_id``."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


class WebhookNotifier:
    def __init__(
        self,
        url: str | None,
        *,
        max_queue: int = 1_000,
        retries: int = 5,
        backoff_s: float = 0.5,
        post: Post = _http_post,
        min_severity: Severity = "medium",
    ) -> None:
        self.url = url
        self.min_severity = min_severity
        self.held_back = 0
        self.retries = retries
        self.backoff_s = backoff_s
        self.post = post
        self.sent = self.failed = self.dropped = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def notify(self, alert: Alert) -> None:
        if not self.enabled:
            return
        if not at_least(alert.severity, self.min_severity):
            self.held_back += 1
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
            self._thread.start()
        while True:
            try:
                self._queue.put_nowait(alert)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            self._deliver(alert)

    def _deliver(self, alert: Alert) -> None:
        assert self.url is not None
        body = slack_payload(alert)
        for attempt in range(self.retries):
            try:
                self.post(self.url, body, alert.alert_id)
                self.sent += 1
                return
            except OSError as exc:
                log.warning("webhook attempt %d failed: %s", attempt + 1, exc)
                time.sleep(self.backoff_s * 2**attempt)
        self.failed += 1
