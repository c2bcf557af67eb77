r"""Can this process reach Kafka the way its settings say? Said in one line, before a client tries.

Kafka clients hide why a connection failed behind "Unable to bootstrap" (kafka-python retries
until its timeout; aiokafka logs the reason and raises a traceback). :func:`check_reachable`
opens one TCP connection to each bootstrap server, and for ``SSL`` / ``SASL_SSL`` completes the
TLS handshake with the context the clients verify the broker with
(:func:`~pipeline.kafka_options.ssl_context`). What fails is raised as :class:`KafkaUnreachable`
whose message says what to do: a refused port, a listener that does not speak TLS, a broker
certificate the configured CA does not verify, a certificate for another host name.

For ``SASL_PLAINTEXT`` / ``SASL_SSL`` it then logs in once with aiokafka (the client the worker
runs on) and names a refused login with the broker's own words (``SaslAuthenticationFailed``):
the clients' bootstrap loops can lose the broker's answer to a closed connection and say only
that no session opened.

>>> from pipeline.config import KafkaSettings
>>> try:
...     check_reachable(KafkaSettings(bootstrap="127.0.0.1:1"), timeout_s=1.0)
... except KafkaUnreachable as exc:
...     print(str(exc).replace(": ", ":\n"))
cannot reach Kafka at 127.0.0.1:1 (Connection refused):
start it, or set COMPUTEWATCH_KAFKA_BOOTSTRAP
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, Final

from pipeline.config import KafkaSettings
from pipeline.kafka_options import aiokafka_options

__all__ = ["KafkaUnreachable", "check_reachable", "split_host_port"]

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH
_WRONG_NAME: Final = frozenset({62, 64})


class KafkaUnreachable(ConnectionError):
    """No bootstrap server could be reached as the settings say; the message says what to do."""


def split_host_port(server: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a host and a port number.

    >>> split_host_port("[::1]:9093")
    ('::1', 9093)
    """
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise KafkaUnreachable(
            f"bootstrap server {server!r} is not host:port: fix COMPUTEWATCH_KAFKA_BOOTSTRAP"
        )
    return host.strip("[]"), int(port)


def check_reachable(kafka: KafkaSettings, timeout_s: float = 10.0) -> str:
    """The first bootstrap server that answers as the settings say; each is tried in turn.

    Raises :class:`KafkaUnreachable` with the first server's failure when none answers, and
    :class:`~pipeline.kafka_options.KafkaConfigError` for settings no client could use (an
    unknown protocol, missing SASL fields, an unreadable CA file).
    """
    options = aiokafka_options(kafka)
    context: ssl.SSLContext | None = options.get("ssl_context")
    failures: list[KafkaUnreachable] = []
    for server in options["bootstrap_servers"]:
        try:
            _handshake(server, context, kafka.ssl_cafile, timeout_s)
            if "sasl_mechanism" in options:
                _log_in(server, options, timeout_s)
        except KafkaUnreachable as exc:
            failures.append(exc)
        else:
            return str(server)
    first = failures[0]
    if len(failures) > 1:
        raise KafkaUnreachable(f"{first} (and {len(failures) - 1} more bootstrap servers)")
    raise first


def _handshake(
    server: str, context: ssl.SSLContext | None, cafile: str | None, timeout_s: float
) -> None:
    host, port = split_host_port(server)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            if context is not None:
                with context.wrap_socket(sock, server_hostname=host):
                    pass
    except ssl.SSLCertVerificationError as exc:
        raise KafkaUnreachable(_untrusted(server, host, cafile, exc)) from None
    except ssl.SSLError as exc:
        raise KafkaUnreachable(_not_tls(server, exc.reason or str(exc))) from None
    except TimeoutError:
        what = "the TLS handshake" if context is not None else "a connection"
        raise KafkaUnreachable(
            f"Kafka at {server} did not answer {what} within {timeout_s:g} s: check that it "
            "runs and that COMPUTEWATCH_KAFKA_BOOTSTRAP names its listener"
        ) from None
    except OSError as exc:
        if context is not None and isinstance(exc, ConnectionResetError | BrokenPipeError):
            raise KafkaUnreachable(_not_tls(server, exc.strerror or str(exc))) from None
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise KafkaUnreachable(
            f"cannot reach Kafka at {server} ({reason}): start it, or set "
            "COMPUTEWATCH_KAFKA_BOOTSTRAP"
        ) from None


def _log_in(server: str, options: dict[str, Any], timeout_s: float) -> None:
    """Open one aiokafka connection (API versions, SASL handshake, authentication) and close it;
    raise :class:`KafkaUnreachable` when the broker refuses the login or the mechanism.

    Anything else (a timeout, a dropped connection) is left to the clients to report.
    Must not be called from a running event loop.
    """
    from aiokafka.conn import create_conn
    from aiokafka.errors import (
        IllegalSaslStateError,
        KafkaError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    host, port = split_host_port(server)
    login = {k: v for k, v in options.items() if k != "bootstrap_servers"}

    async def connect_once() -> None:
        connection = await create_conn(
            host, port, client_id="computewatch-check",
            request_timeout_ms=max(int(timeout_s * 1000), 1), **login,
        )  # fmt: skip
        connection.close()

    mechanism, user = options["sasl_mechanism"], options["sasl_plain_username"]
    try:
        asyncio.run(asyncio.wait_for(connect_once(), timeout_s))
    except UnsupportedSaslMechanismError as exc:
        raise KafkaUnreachable(
            f"Kafka at {server} does not offer SASL {mechanism} ({_said(exc)}): set "
            "COMPUTEWATCH_KAFKA_SASL_MECHANISM to one it offers"
        ) from None
    except IllegalSaslStateError:
        raise KafkaUnreachable(
            f"Kafka at {server} takes no SASL login on this listener (IllegalSaslState): check "
            "COMPUTEWATCH_KAFKA_BOOTSTRAP and COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL"
        ) from None
    except SaslAuthenticationFailed as exc:
        raise KafkaUnreachable(
            f"Kafka at {server} refused the SASL {mechanism} login of {user!r} "
            f"(SaslAuthenticationFailed: {_said(exc)}): check COMPUTEWATCH_KAFKA_SASL_USERNAME "
            "and the password (COMPUTEWATCH_KAFKA_SASL_PASSWORD or "
            "COMPUTEWATCH_KAFKA_SASL_PASSWORD_FILE)"
        ) from None
    except (TimeoutError, OSError, KafkaError):
        return  # not a refusal: the clients retry and report it


def _said(exc: Exception) -> str:
    """What the broker said, without aiokafka's ``[Error N] Name:`` prefix."""
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _untrusted(
    server: str, host: str, cafile: str | None, exc: ssl.SSLCertVerificationError
) -> str:
    reason = exc.verify_message or str(exc)
    if exc.verify_code in _WRONG_NAME:
        return (
            f"the certificate of the Kafka broker at {server} is not for {host} ({reason}): "
            "name the broker in COMPUTEWATCH_KAFKA_BOOTSTRAP as its certificate does"
        )
    trusted = f"a CA in {cafile}" if cafile else "a CA of the system's (no CA file is set)"
    return (
        f"the certificate of the Kafka broker at {server} is not signed by {trusted} "
        f"({reason}): set COMPUTEWATCH_KAFKA_SSL_CAFILE to the CA that signed it"
    )


def _not_tls(server: str, reason: str) -> str:
    return (
        f"TLS handshake with Kafka at {server} failed ({reason}): is it a TLS listener? check "
        "COMPUTEWATCH_KAFKA_BOOTSTRAP and COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL"
    )
