"""Kafka connection details shared by the worker, the publisher, the simulator and the tools."""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka.partitioner import murmur2

from .settings import Settings

# Table keys are "<district>\x1f<rest>": the partitioner hashes only the district, so a
# district's state records share its events' partition number (Faust recovers a
# changelog partition together with the source partition of the same number).
KEY_SEPARATOR = "\x1f"
_SEP_BYTE = KEY_SEPARATOR.encode()


def district_partition(district: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a district key."""
    return (int(murmur2(district.encode())) & 0x7FFFFFFF) % partitions


def district_partitioner(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """Kafka's default partitioner, applied to the district part of a composite key."""
    if key is None:
        return random.choice(list(available) or list(all_partitions))
    cut = key.find(_SEP_BYTE)
    if cut >= 0:
        key = key[:cut]
    return all_partitions[(int(murmur2(key)) & 0x7FFFFFFF) % len(all_partitions)]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_enabled:
        return None
    context = ssl.create_default_context(
        purpose=ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile or None
    )
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None)
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection keyword arguments for aiokafka and kafka-python clients alike."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.sasl_enabled:
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = settings.sasl_password.reveal()
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """Faust ``broker_credentials`` for the settings (None for plain text)."""
    import faust

    context = ssl_context(settings)
    if settings.sasl_enabled:
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.reveal(),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def check_connection(settings: Settings, timeout: float = 15.0) -> str:
    """Open one authenticated connection to a bootstrap server, or say plainly why not.

    Kafka clients report a refused password as "unable to bootstrap" after a timeout;
    asking one server directly turns it into a sentence a person can act on. Returns the
    server that answered.
    """
    import asyncio

    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError, SaslAuthenticationFailed

    from .errors import BrokerError

    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.sasl_enabled:
        kwargs.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.reveal(),
        )
    problems: list[str] = []
    for server in settings.bootstrap_list:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), **kwargs), timeout)
        except SaslAuthenticationFailed as exc:
            why = exc.args[0] if exc.args else "authentication failed"
            raise BrokerError(
                f"Kafka at {server} refused the credentials of user "
                f"{settings.sasl_username!r} ({settings.sasl_mechanism}): {why}. "
                "Check WATCHFLOOR_SASL_USERNAME and WATCHFLOOR_SASL_PASSWORD."
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise BrokerError(
                f"The TLS certificate of Kafka at {server} could not be verified "
                f"({exc.verify_message}); set WATCHFLOOR_SSL_CAFILE to the CA that signed it."
            ) from None
        except (OSError, KafkaError, TimeoutError) as exc:
            problems.append(f"{server}: {exc or type(exc).__name__}")
            continue
        conn.close()
        return server
    raise BrokerError(
        f"No Kafka broker answers ({'; '.join(problems)}); check WATCHFLOOR_BOOTSTRAP_SERVERS "
        f"and WATCHFLOOR_SECURITY_PROTOCOL ({settings.security_protocol})."
    )
