"""A cheaper hand-over of each message from Faust's consumer to the agent's stream.

Faust's consumer loop delivers every fetched message with
``wait_first(callback(message), suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per
message, so that a delivery blocked on a full stream buffer is abandoned when a rebalance
suspends the flow. Most deliveries never block (the buffer has room), and for those the tasks
are pure cost: with them a no-op agent here received about 16k messages/s.

:class:`DirectDeliveryConsumer` first runs the delivery directly. If it completes without
waiting, that is the result ``wait_first`` would have returned; if it has to wait (the buffer
is full), it continues under Faust's own ``wait_first``, exactly as before. Whenever the flow
is already suspended, or the consumer is stopping, Faust's path is taken from the start.

:class:`RawBytes` hands the agent the message's bytes without a codec lookup per message.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults


class Resumed:
    """An awaitable that finishes ``coro``, which has already run up to yielding ``pending``.

    Awaiting it hands ``pending`` to the event loop as the coroutine itself would have, then
    goes on with the coroutine; anything thrown in meanwhile (a cancellation) is thrown into
    the coroutine.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # e.g. a cancellation: the coroutine gets it, as in a Task
                pending = _advance(partial(coro.throw, exc))
            else:
                pending = _advance(partial(coro.send, sent))
            if isinstance(pending, _Returned):
                return pending.value


@dataclass(frozen=True, slots=True)
class _Returned:
    value: Any


def _advance(step: Callable[[], Any]) -> Any:
    """What ``step`` (one step of a coroutine) yields, or :class:`_Returned` once it returns."""
    try:
        return step()
    except StopIteration as stop:
        return _Returned(stop.value)


class DirectDeliveryConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering without tasks when the delivery need not wait."""

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        delivery, *others = coros
        if not self._direct_possible(delivery, others, timeout):
            return await super().wait_first(*coros, timeout=timeout)
        try:
            pending = delivery.send(None)
        except StopIteration as done:
            for other in others:
                other.close()
            return WaitResults([delivery], [done.value], False)
        return await super().wait_first(Resumed(delivery, pending), *others, timeout=timeout)

    def _direct_possible(self, delivery: Any, others: list[Any], timeout: Any) -> bool:
        """Only the consumer loop's call qualifies: a delivery coroutine and the flow's
        ``suspend_flow.wait()``, no timeout, the flow running and the consumer not stopping."""
        return (
            timeout is None
            and len(others) == 1
            and isinstance(delivery, Coroutine)
            and isinstance(others[0], Coroutine)
            and not self.suspend_flow.is_set()
            and not self._stopped.is_set()
            and not self._crashed.is_set()
        )


class DirectDeliveryTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`DirectDeliveryConsumer`."""

    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = DirectDeliveryConsumer


class RawBytes(faust.Schema):
    """Keys and values as the message's own bytes, without Faust's codec lookup per message
    (which the ``raw`` serializer still does: about 5 % of a no-op agent's time)."""

    def loads_key(self, app: Any, message: Any, **_: Any) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, **_: Any) -> Any:
        return message.value


def use_direct_delivery(app: faust.App) -> None:
    """Give ``app`` the transport of :class:`DirectDeliveryConsumer` (before it starts)."""
    app.transport = DirectDeliveryTransport(app.conf.broker_consumer, app)
