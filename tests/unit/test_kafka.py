"""Kafka clients from settings: TLS files and connection failures told in sentences."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from streams import kafka
from streams.errors import SettingsError
from streams.settings import Secret, Settings


def tls(**files: str) -> Settings:
    return Settings(security_protocol="SSL", **files)


@pytest.mark.parametrize(
    ("field", "make", "words"),
    [
        ("ssl_cafile", None, "WATCHFLOOR_SSL_CAFILE={path} does not exist"),
        ("ssl_cafile", "not a certificate\n", "WATCHFLOOR_SSL_CAFILE={path} is not a PEM file"),
        ("ssl_cafile", "dir", "is a directory"),
        ("ssl_certfile", None, "WATCHFLOOR_SSL_CERTFILE={path} does not exist"),
        ("ssl_certfile", "not a certificate\n", "is not a PEM client certificate"),
    ],
)
def test_unusable_tls_files_are_one_sentence(
    tmp_path: Path, field: str, make: str | None, words: str
) -> None:
    path = tmp_path / "file.pem"
    if make == "dir":
        path.mkdir()
    elif make is not None:
        path.write_text(make)
    with pytest.raises(SettingsError) as caught:
        kafka.ssl_context(tls(**{field: str(path)}))
    assert words.format(path=path) in str(caught.value)
    assert str(caught.value).endswith(".")


def test_a_key_without_a_certificate_is_refused() -> None:
    with pytest.raises(SettingsError, match="WATCHFLOOR_SSL_KEYFILE is set without"):
        kafka.ssl_context(tls(ssl_keyfile="/x.key"))


def test_plain_settings_need_no_context() -> None:
    assert kafka.ssl_context(Settings()) is None


@pytest.mark.parametrize(
    ("protocol", "exc", "words"),
    [
        ("SASL_SSL", ConnectionResetError(), "closed during the TLS handshake"),
        ("SSL", ssl.SSLError(1, "wrong version number"), "TLS listener"),
        ("PLAINTEXT", RuntimeError("Connection at 127.0.0.1:9094 closed"),
         "set WATCHFLOOR_SECURITY_PROTOCOL to SSL or SASL_SSL"),
        ("PLAINTEXT", TimeoutError(), "no answer in time"),
        ("PLAINTEXT", OSError(111, "Connection refused"), "Connection refused"),
    ],
)
def test_connection_problems_always_say_something(
    protocol: str, exc: BaseException, words: str
) -> None:
    s = Settings(security_protocol=protocol, sasl_username="u", sasl_password=Secret("p"))
    text = kafka._connection_problem(s, exc)
    assert words in text and text.strip()


def test_aiokafka_fixes_install_once() -> None:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.consumer.fetcher import Fetcher

    kafka.install_aiokafka_fixes()
    update, fetch = AIOKafkaClient._metadata_update, Fetcher._proc_fetch_request
    kafka.install_aiokafka_fixes()
    assert AIOKafkaClient._metadata_update is update and Fetcher._proc_fetch_request is fetch


def test_a_failed_metadata_update_waits_before_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from aiokafka.client import AIOKafkaClient

    kafka.install_aiokafka_fixes()
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> list[bool]:
        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:1", retry_backoff_ms=100)
        monkeypatch.setattr(kafka.asyncio, "sleep", fake_sleep)
        results = []
        for _ in range(7):
            results.append(await client._metadata_update(client.cluster, []))
        return results

    results = asyncio.run(main())
    assert results == [False] * 7
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
