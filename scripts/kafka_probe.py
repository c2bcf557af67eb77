"""Helpers for scripts/kafka.sh: free ports, a KRaft cluster id, and waiting for a broker.

Run with the project's interpreter (``.venv/bin/python``) so kafka-python is importable; without
it, ``wait`` falls back to checking that the port accepts TCP connections.

    python scripts/kafka_probe.py free-ports 2
    python scripts/kafka_probe.py cluster-id
    python scripts/kafka_probe.py wait --bootstrap 127.0.0.1:9092 --pid 1234 --timeout 90
    python scripts/kafka_probe.py wait --bootstrap 127.0.0.1:9094 --sasl-user u --sasl-password p \
        --ssl-cafile ca.pem
    python scripts/kafka_probe.py launch --log out.log -- java -cp 'libs/*' kafka.Kafka x.properties
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import uuid


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports on 127.0.0.1 that were free a moment ago (held open together)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tcp_answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1.0):
        return True
    return False


def _metadata_answers(
    bootstrap: str, user: str | None, password: str | None, cafile: str | None
) -> bool:
    """True when the broker serves cluster metadata (through SASL/SCRAM when a user is given,
    over TLS verified with ``cafile`` when one is given)."""
    try:
        from kafka import KafkaAdminClient
    except ImportError:  # no kafka-python: settle for an open port
        return _tcp_answers(bootstrap)
    options: dict[str, object] = {"bootstrap_servers": bootstrap, "bootstrap_timeout_ms": 3000}
    if user is not None:
        options.update(
            sasl_mechanism="SCRAM-SHA-256",
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
    if cafile is not None:
        options["ssl_cafile"] = cafile
    options["security_protocol"] = {
        (False, False): "PLAINTEXT",
        (True, False): "SASL_PLAINTEXT",
        (False, True): "SSL",
        (True, True): "SASL_SSL",
    }[(user is not None, cafile is not None)]
    try:
        admin = KafkaAdminClient(**options)
    except Exception:
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except Exception:
        return False
    finally:
        admin.close()


def wait(
    bootstrap: str,
    pid: int | None,
    timeout: float,
    user: str | None,
    password: str | None,
    cafile: str | None = None,
) -> int:
    """Poll until the broker answers (exit 0), its process dies (exit 2) or time runs out (1)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            print(f"broker process {pid} exited before answering", file=sys.stderr)
            return 2
        if _tcp_answers(bootstrap) and _metadata_answers(bootstrap, user, password, cafile):
            return 0
        time.sleep(0.3)
    print(f"broker at {bootstrap} did not answer within {timeout:.0f}s", file=sys.stderr)
    return 1


def launch(command: list[str], log_path: str) -> int:
    """Start ``command`` detached (own session, output to ``log_path``) and print its PID."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(process.pid)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ports = sub.add_parser("free-ports", help="print N free ports on 127.0.0.1, one per line")
    ports.add_argument("count", type=int)
    sub.add_parser("cluster-id", help="print a fresh KRaft cluster id")
    waiter = sub.add_parser("wait", help="wait until a broker serves metadata")
    waiter.add_argument("--bootstrap", required=True)
    waiter.add_argument("--pid", type=int)
    waiter.add_argument("--timeout", type=float, default=90.0)
    waiter.add_argument("--sasl-user")
    waiter.add_argument("--sasl-password")
    waiter.add_argument("--ssl-cafile", help="connect over TLS, trusting this CA")
    launcher = sub.add_parser("launch", help="start a command detached and print its PID")
    launcher.add_argument("--log", required=True)
    launcher.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # kafka-python is noisy while the broker boots
    if args.command == "free-ports":
        print("\n".join(str(port) for port in free_ports(args.count)))
        return 0
    if args.command == "cluster-id":
        print(cluster_id())
        return 0
    if args.command == "launch":
        argv_ = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        return launch(argv_, args.log)
    return wait(
        args.bootstrap, args.pid, args.timeout, args.sasl_user, args.sasl_password,
        args.ssl_cafile,
    )


if __name__ == "__main__":
    sys.exit(main())
