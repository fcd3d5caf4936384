"""Settings: the one reader of WATCHFLOOR_* variables, its checks and what it derives."""

from __future__ import annotations

import pytest

from streams.clock import FixedClock
from streams.errors import SettingsError
from streams.events import Kind, Stream
from streams.reference import load_reference
from streams.settings import Settings
from streams.state import Limits
from tests.support import EPOCH


def test_variables_with_the_prefix_are_read_and_converted() -> None:
    s = Settings.from_env(
        {
            "WATCHFLOOR_PARTITIONS": "8",
            "WATCHFLOOR_GRACE_SECONDS": "3600",
            "WATCHFLOOR_LOG_JSON": "yes",
            "WATCHFLOOR_APP_ID": "wf-test",
            "PARTITIONS": "99",  # not ours: ignored
        }
    )
    assert (s.partitions, s.grace_seconds, s.log_json, s.app_id) == (8, 3600.0, True, "wf-test")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("PARTITIONS", "four", "WATCHFLOOR_PARTITIONS must be a int, not 'four'"),
        ("LOG_JSON", "maybe", "WATCHFLOOR_LOG_JSON must be true or false"),
        ("PARTITIONS", "0", "at least 1"),
        ("SECURITY_PROTOCOL", "TLS", "must be one of"),
        ("STORE", "redis://", "memory:// or rocksdb://"),
    ],
)
def test_malformed_values_are_one_sentence(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings.from_env({f"WATCHFLOOR_{name}": value})


def test_sasl_needs_a_user_and_a_password() -> None:
    with pytest.raises(SettingsError, match="needs WATCHFLOOR_SASL_USERNAME"):
        Settings.from_env({"WATCHFLOOR_SECURITY_PROTOCOL": "SASL_SSL"})


def test_secrets_never_print() -> None:
    s = Settings.from_env(
        {
            "WATCHFLOOR_SECURITY_PROTOCOL": "SASL_SSL",
            "WATCHFLOOR_SASL_USERNAME": "u",
            "WATCHFLOOR_SASL_PASSWORD": "hunter2-secret",
        }
    )
    for text in (repr(s), str(s.public()), repr(s.sasl_password), f"{s!r}"):
        assert "hunter2" not in text
    assert s.sasl_password.reveal() == "hunter2-secret"


def test_topics_follow_the_settings_in_one_map() -> None:
    s = Settings(topic_incidents="a", topic_disputes="b", topic_patrols="c")
    assert [s.topic_of(st) for st in Stream] == ["a", "b", "c"]
    assert s.topic_for_kind(Kind.HAZARD_VERIFIED) == "c"
    assert s.topic_for_kind(Kind.DISPUTE_ESCALATED) == "b"
    assert s.stream_by_topic == {"a": Stream.INCIDENTS, "b": Stream.DISPUTES, "c": Stream.PATROLS}
    assert s.source_topics == ("a", "b", "c")


def test_defaults_come_from_the_core_once() -> None:
    # The counting core's defaults and the settings' defaults are one value each.
    assert Settings().limits == Limits()
    s = Settings(grace_seconds=60, retention_days=30)
    assert (s.limits.grace, s.limits.retention_days) == (60, 30)
    v = Settings(max_record_bytes=1000).validator(
        load_reference(Settings().reference_file), FixedClock(EPOCH)
    )
    assert v.max_record_bytes == 1000


# --- issue 12: one namespace, checks that name the variable, Faust's variables ------------


def test_one_namespace_names_the_app_id_and_every_topic() -> None:
    s = Settings.from_env({"WATCHFLOOR_NAMESPACE": "city-b"})
    assert s.app_id == "city-b"
    assert s.source_topics == ("city-b.incidents", "city-b.disputes", "city-b.patrols")
    assert s.topic_deadletter == "city-b.deadletter"
    # Defaults are the namespace "watchfloor"; a name set on its own wins.
    assert Settings().app_id == "watchfloor" and Settings().topic_patrols == "watchfloor.patrols"
    s = Settings.from_env({"WATCHFLOOR_NAMESPACE": "b", "WATCHFLOOR_TOPIC_PATROLS": "legacy"})
    assert (s.topic_patrols, s.topic_incidents) == ("legacy", "b.incidents")
    # replace() moves the derived names with the namespace, not the ones set.
    moved = s.replace(namespace="c")
    assert (moved.app_id, moved.topic_incidents, moved.topic_patrols) == ("c", "c.incidents",
                                                                          "legacy")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("NAMESPACE", "city.b", "no dot"),
        ("NAMESPACE", "", "WATCHFLOOR_NAMESPACE"),
        ("TOPIC_PATROLS", "has space", "WATCHFLOOR_TOPIC_PATROLS must be a Kafka name"),
        ("TIMEZONE", "Mars/Olympus", "WATCHFLOOR_TIMEZONE must be an IANA time zone"),
        ("TIMEZONE", "../../etc/passwd", "WATCHFLOOR_TIMEZONE"),
        ("PRODUCER_TIMEOUT", "0", "WATCHFLOOR_PRODUCER_TIMEOUT must be more than 0"),
        ("INGEST_TIMEOUT", "-1", "WATCHFLOOR_INGEST_TIMEOUT"),
        ("SHUTDOWN_DRAIN_SECONDS", "-1", "cannot be negative"),
        ("FETCH_PARTITION_BYTES", "0", "WATCHFLOOR_FETCH_PARTITION_BYTES and .* at least 1024"),
        ("FETCH_MAX_BYTES", "1023", "WATCHFLOOR_FETCH_PARTITION_BYTES and .* at least 1024"),
    ],
)
def test_more_malformed_values_are_one_sentence(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings.from_env({f"WATCHFLOOR_{name}": value})


def test_variables_of_other_programs_are_named_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams import settings as settings_module

    env = {"WEB_PORT": "7777", "PATH": "/bin"}
    assert settings_module.variables_set(["WEB_PORT", "APP_DATADIR"], env) == ["WEB_PORT"]
    monkeypatch.setenv("F_WEB_PORT", "1")
    monkeypatch.setenv("FAUST_LOOP", "eventlet")
    dropped = settings_module.drop_variables(["F_WEB_PORT", "FAUST_LOOP", "F_DEBUG"])
    assert dropped == ["FAUST_LOOP", "F_WEB_PORT"]
    import os

    assert "F_WEB_PORT" not in os.environ and "FAUST_LOOP" not in os.environ
