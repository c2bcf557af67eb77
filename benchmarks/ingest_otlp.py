"""Spans/s through `computewatch ingest otlp` into Kafka, in batched OTLP/HTTP protobuf exports.

    .venv/bin/python benchmarks/ingest_otlp.py [--spans 200000] [--batch 512] [--clients 4]

Needs the local broker (``scripts/kafka.sh start``; ``COMPUTEWATCH_KAFKA_BOOTSTRAP``). The
receiver runs as its own process (the real command) on fresh events and dead-letter topics
(4 partitions, deleted afterwards); this process posts pre-encoded export requests of
``--batch`` GenAI spans each (half of them in each attribute generation, every span distinct)
from ``--clients`` threads. A request counts once the receiver answered 200, i.e. after Kafka
acknowledged all of its events. Spans/s = spans / wall time from the first request to the last
answer; the receiver's CPU time per span comes from ``/proc``. The events topic's end offsets
are checked to hold exactly one message per span.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

T0_NS = time.time_ns()


def export_body(batch: int, size: int) -> bytes:
    """One export request of ``size`` GenAI spans, ids unique to ``batch``."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (("service.name", "vllm"), ("host.name", f"gpu-{batch % 8:02d}")):
        resource_spans.resource.attributes.add(key=key).value.string_value = value
    scope = resource_spans.scope_spans.add()
    for i in range(size):
        span = scope.spans.add(
            trace_id=uuid.uuid4().bytes, span_id=(batch * size + i + 1).to_bytes(8, "big"),
            name="chat", start_time_unix_nano=T0_NS, end_time_unix_nano=T0_NS + 2 * 10**9,
        )  # fmt: skip
        current = i % 2 == 0
        ints = (
            {"gen_ai.usage.input_tokens": 300 + i, "gen_ai.usage.output_tokens": 1200,
             "gen_ai.usage.reasoning.output_tokens": 900, "gen_ai.request.max_tokens": 4096}
            if current else
            {"gen_ai.usage.prompt_tokens": 300 + i, "gen_ai.usage.completion_tokens": 200,
             "gen_ai.usage.num_sequences": 1}
        )  # fmt: skip
        strings = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "reasoner-large",
                   "tenant.id": f"tenant-{i % 30}", "computewatch.api_key_id": f"key-{i % 200}"}
        for key, text in strings.items():
            span.attributes.add(key=key).value.string_value = text
        for key, number in ints.items():
            span.attributes.add(key=key).value.int_value = number
        span.attributes.add(key="gen_ai.latency.time_in_model_inference").value.double_value = 1.7
        finish = span.attributes.add(key="gen_ai.response.finish_reasons").value
        finish.array_value.values.add().string_value = "stop"
    return request.SerializeToString()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def events_on(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=512, help="spans per export (SDK: 512)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent exporters")
    args = parser.parse_args()
    bootstrap = os.environ.get("COMPUTEWATCH_KAFKA_BOOTSTRAP")
    if not bootstrap:
        sys.exit("error: set COMPUTEWATCH_KAFKA_BOOTSTRAP (scripts/kafka.sh start)")
    batches = max(args.spans // args.batch, 1)
    bodies = [export_body(b, args.batch) for b in range(batches + 2)]
    events, dlq = (f"bench.ingest.{name}.{uuid.uuid4().hex[:8]}" for name in ("events", "dlq"))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics({t: {"num_partitions": 4, "replication_factor": 1} for t in (events, dlq)},
                        wait_for_metadata=True)  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/traces"
    env = {**os.environ, "COMPUTEWATCH_KAFKA_EVENTS_TOPIC": events,
           "COMPUTEWATCH_KAFKA_DLQ_TOPIC": dlq, "COMPUTEWATCH_INGEST_PORT": str(port),
           "COMPUTEWATCH_INGEST_MAX_SPANS": str(max(args.batch, 10_000))}  # fmt: skip
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    receiver = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "ingest", "otlp"], env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    session = requests.Session()
    headers = {"Content-Type": "application/x-protobuf"}

    def post(body: bytes) -> None:
        answer = session.post(url, data=body, headers=headers, timeout=120)
        if answer.status_code != 200 or answer.content:
            raise RuntimeError(f"receiver answered {answer.status_code}: {answer.content[:200]!r}")

    try:
        for _ in range(300):
            try:
                post(bodies[0])  # warm-up, and waits for the receiver to listen
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        post(bodies[1])
        cpu_before, started = cpu_seconds(receiver.pid), time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(post, bodies[2:]))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(receiver.pid) - cpu_before
    finally:
        receiver.terminate()
        receiver.wait(30)
    spans = batches * args.batch
    on_topic = events_on(bootstrap, events)
    admin.delete_topics([events, dlq])
    admin.close()
    line = (
        f"spans={spans} batch={args.batch} clients={args.clients} seconds={elapsed:.2f} "
        f"spans_per_s={spans / elapsed:,.0f} receiver_cpu_us_per_span={cpu / spans * 1e6:.1f} "
        f"events_on_topic={on_topic - 2 * args.batch} (expected {spans})"
    )
    print(line)  # noqa: T201 - printing the numbers is this script's job


if __name__ == "__main__":
    main()
