"""The consumer's direct delivery gives the results Faust's ``wait_first`` gives, with or
without waiting, and a rebalance still abandons a delivery blocked on a full buffer."""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

import faust
import pytest

from pipeline.faust_delivery import DirectDeliveryConsumer, Resumed, use_direct_delivery


def with_consumer(check: Callable[[DirectDeliveryConsumer], Awaitable[None]]) -> None:
    """Run ``check`` in an event loop with the consumer of an app using direct delivery
    (never started: ``wait_first`` needs no broker)."""

    async def main() -> None:
        app = faust.App("direct-delivery-test", broker="kafka://127.0.0.1:1", web_enabled=False)
        use_direct_delivery(app)
        consumer = app.consumer
        assert isinstance(consumer, DirectDeliveryConsumer)
        await check(consumer)

    asyncio.run(main())


def test_a_delivery_that_need_not_wait_runs_directly_and_closes_the_flow_wait() -> None:
    async def check(consumer: DirectDeliveryConsumer) -> None:
        delivered: list[str] = []

        async def deliver() -> str:
            delivered.append("m")
            return "done"

        tasks_before = len(asyncio.all_tasks())
        flow_wait = consumer.suspend_flow.wait()
        winners, results, stopped = await consumer.wait_first(deliver(), flow_wait)
        assert delivered == ["m"] and results == ["done"] and not stopped
        assert len(winners) == 1
        assert inspect.getcoroutinestate(flow_wait) == inspect.CORO_CLOSED  # not left unawaited
        assert len(asyncio.all_tasks()) == tasks_before

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with_consumer(check)


def test_a_delivery_that_waits_finishes_under_wait_first() -> None:
    async def check(consumer: DirectDeliveryConsumer) -> None:
        room = asyncio.get_running_loop().create_future()
        steps: list[str] = []

        async def deliver() -> str:
            steps.append("started")
            await room
            steps.append("put")
            return "done"

        flow_wait = consumer.suspend_flow.wait()
        waiting = asyncio.ensure_future(consumer.wait_first(deliver(), flow_wait))
        await asyncio.sleep(0.01)
        assert steps == ["started"] and not waiting.done()
        room.set_result(None)
        _, results, stopped = await asyncio.wait_for(waiting, 1)
        assert steps == ["started", "put"] and results == ["done"] and not stopped

    with_consumer(check)


def test_a_suspended_flow_abandons_a_waiting_delivery() -> None:
    async def check(consumer: DirectDeliveryConsumer) -> None:
        never = asyncio.get_running_loop().create_future()
        ends: list[str] = []

        async def deliver() -> None:
            try:
                await never
            finally:
                ends.append("cleaned up")

        flow_wait = consumer.suspend_flow.wait()
        waiting = asyncio.ensure_future(consumer.wait_first(deliver(), flow_wait))
        await asyncio.sleep(0.01)
        consumer.suspend_flow.set()
        winners, results, stopped = await asyncio.wait_for(waiting, 1)
        await asyncio.sleep(0)
        assert ends == ["cleaned up"]  # the delivery was cancelled, as on Faust's own path
        assert results == [True] and winners == [flow_wait] and not stopped

    with_consumer(check)


def test_with_the_flow_suspended_the_delivery_takes_faust_path() -> None:
    async def check(consumer: DirectDeliveryConsumer) -> None:
        consumer.suspend_flow.set()
        running: list[asyncio.Task[object] | None] = []

        async def deliver() -> str:
            running.append(asyncio.current_task())
            return "done"

        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        assert running and running[0] is not asyncio.current_task()  # a task of its own

    with_consumer(check)


def test_resumed_forwards_results_exceptions_and_cancellation() -> None:
    async def add(first: asyncio.Future[int], second: asyncio.Future[int]) -> int:
        return await first + await second

    async def started(first: asyncio.Future[int], second: asyncio.Future[int]) -> Resumed:
        coro = add(first, second)
        return Resumed(coro, coro.send(None))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        task = asyncio.ensure_future(await started(first, second))
        first.set_result(1)
        await asyncio.sleep(0)
        second.set_result(2)
        assert await task == 3

        failing = loop.create_future()
        task = asyncio.ensure_future(await started(failing, second))
        failing.set_exception(ValueError("bad"))
        with pytest.raises(ValueError, match="bad"):
            await task

        blocked = loop.create_future()
        task = asyncio.ensure_future(await started(blocked, second))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert blocked.cancelled()

    asyncio.run(main())


def test_the_events_topic_hands_over_the_message_bytes_without_codecs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faust.types import Message

    from pipeline.config import Settings
    from pipeline.stream import faust_app

    settings = Settings.model_validate({"worker": {"data_dir": tmp_path}})
    app, topic = faust_app(settings)

    def no_codec(*args: object, **kwargs: object) -> object:
        raise AssertionError("a codec was looked up")

    monkeypatch.setattr(app.serializers, "loads_key", no_codec)
    monkeypatch.setattr(app.serializers, "loads_value", no_codec)
    payload = b'{"not": "json'  # the engine, not Faust, rejects it (dead letter)
    message = Message("compute.events", 0, 7, 0.0, 0, None, b"acme", payload, None)
    assert topic.schema.loads_value(app, message) is payload
    assert topic.schema.loads_key(app, message) == b"acme"
