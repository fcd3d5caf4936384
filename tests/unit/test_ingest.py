"""HTTP ingest logic: tokens, limits, per-event answers and dead letters, without a web server."""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import ingest, ingest_tokens
from streams.clock import FixedClock
from streams.deadletter import DeadLetter
from streams.errors import SettingsError
from streams.reference import Reference
from streams.settings import Secret, Settings
from streams.validation import EventValidator
from tests.support import EPOCH_UTC

NOW = EPOCH_UTC  # the shared validator fixture's clock
HAZARD = "watchfloor.hazard.found.v1"
FILED = "watchfloor.incident.case_filed.v1"
GRID_TOKEN = "wf_grid-token-for-tests-only"
POLICE_TOKEN = "wf_police-token-for-tests-only"


def entry(name: str, token: str, districts: list[str], types: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "districts": districts,
        "types": types,
    }


TOKENS_DOC = {
    "tokens": [
        entry("jinshui-grid-app", GRID_TOKEN, ["jinshui"], ["watchfloor.hazard.*"]),
        entry(
            "city-police", POLICE_TOKEN, ["*"], ["watchfloor.incident.*", "watchfloor.dispute.*"]
        ),
    ]
}


class Kafka:
    """Stands in for the worker's producer: records what would be sent, can be made to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.dead: list[DeadLetter] = []
        self.fail_ids: set[str] = set()
        self.fail_dead_letters = False

    async def send(self, topic: str, key: bytes, value: bytes, headers: Sequence[Any]) -> None:
        await asyncio.sleep(0)
        if orjson.loads(value).get("id") in self.fail_ids:
            raise ConnectionError("broker went away")
        self.sent.append((topic, key, value, list(headers)))

    async def dead_letter(self, letter: DeadLetter) -> None:
        if self.fail_dead_letters:
            raise ConnectionError("dead-letter topic unavailable")
        self.dead.append(letter)


def service(validator: EventValidator, kafka: Kafka, **overrides: Any) -> ingest.IngestService:
    s = Settings(ingest_tokens=Secret(json.dumps(TOKENS_DOC)), **overrides)
    tokens = ingest.IngestTokens.from_settings(s, validator.reference)
    return ingest.IngestService(
        validator, tokens, s, kafka.send, dead_letter=kafka.dead_letter, clock=FixedClock(NOW)
    )


def ex(validator: EventValidator, etype: str, n: int = 0, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(validator.files.by_type[etype]["examples"][n])
    doc.update(changes)
    return doc


def post(svc: ingest.IngestService, token: str | None, body: Any) -> ingest.IngestResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    auth = None if token is None else f"Bearer {token}"
    return asyncio.run(svc.handle(auth, raw))


# --- tokens -----------------------------------------------------------------------------


def test_new_tokens_are_random_and_stored_as_sha256() -> None:
    a, b = ingest.new_token(), ingest.new_token()
    assert a != b and a.startswith("wf_") and len(a) >= 40
    assert ingest.hash_token(a) == hashlib.sha256(a.encode()).hexdigest()


def test_tokens_from_file_and_inline_together(tmp_path: Path, reference: Reference) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS_DOC["tokens"][:1]))  # a bare list is fine too
    inline = json.dumps({"tokens": TOKENS_DOC["tokens"][1:]})
    s = Settings(ingest_tokens_file=str(path), ingest_tokens=Secret(inline))
    tokens = ingest.IngestTokens.from_settings(s, reference)
    assert [t.name for t in tokens] == ["city-police", "jinshui-grid-app"]
    grid = tokens.find(GRID_TOKEN)
    assert grid is not None and grid.name == "jinshui-grid-app"
    assert grid.allows_district("jinshui") and not grid.allows_district("erqi")
    assert grid.allows_type(HAZARD) and not grid.allows_type(FILED)
    assert tokens.find("wf_someone-elses") is None
    assert tokens.find(grid.sha256) is None, "the stored hash is not itself a token"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"tokens": [{**TOKENS_DOC["tokens"][0], "admin": True}]}, "unknown fields admin"),
        ({"tokens": [{**TOKENS_DOC["tokens"][0], "sha256": "abc"}]}, "64 lower-case hex"),
        ({"tokens": [{**TOKENS_DOC["tokens"][0], "districts": ["atlantis"]}]}, "atlantis is not"),
        ({"tokens": [{**TOKENS_DOC["tokens"][0], "districts": []}]}, "non-empty list"),
        (
            {"tokens": [{**TOKENS_DOC["tokens"][0], "types": ["watchfloor.hazzard.*"]}]},
            "matches no event type",
        ),
        ({"tokens": [TOKENS_DOC["tokens"][0], TOKENS_DOC["tokens"][0]]}, "same hash"),
        (
            {
                "tokens": [
                    TOKENS_DOC["tokens"][0],
                    {**TOKENS_DOC["tokens"][1], "name": "jinshui-grid-app"},
                ]
            },
            "Two ingest tokens",
        ),
        ({"token": []}, "only a 'tokens' list"),
        ({"tokens": [{**TOKENS_DOC["tokens"][0], "name": "has space"}]}, "name must be"),
    ],
)
def test_bad_token_files_are_refused(
    reference: Reference, doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        ingest.IngestTokens.from_settings(
            Settings(ingest_tokens=Secret(json.dumps(doc))), reference
        )


def test_bad_inline_json_does_not_echo_the_secret(reference: Reference) -> None:
    with pytest.raises(SettingsError) as caught:
        ingest.IngestTokens.from_settings(Settings(ingest_tokens=Secret("{oops wf_secret")))
    assert "wf_secret" not in str(caught.value)


def test_missing_tokens_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot be read"):
        ingest.IngestTokens.from_settings(Settings(ingest_tokens_file=str(tmp_path / "nope")))


# --- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, "", "Bearer", "Bearer   ", "Basic d2Y6d2Y=", GRID_TOKEN])
def test_missing_or_malformed_authorization(validator: EventValidator, auth: str | None) -> None:
    kafka = Kafka()
    resp = asyncio.run(service(validator, kafka).handle(auth, orjson.dumps(ex(validator, HAZARD))))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in resp.body["error"]
    assert kafka.sent == [] and kafka.dead == []


def test_unknown_token(validator: EventValidator) -> None:
    kafka = Kafka()
    resp = post(service(validator, kafka), "wf_not-a-real-token", ex(validator, HAZARD))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert kafka.sent == []


def test_scheme_is_case_insensitive(validator: EventValidator) -> None:
    kafka = Kafka()
    svc = service(validator, kafka)
    resp = asyncio.run(svc.handle(f"bearer {GRID_TOKEN}", orjson.dumps(ex(validator, HAZARD))))
    assert resp.status == 202


# --- accepted ---------------------------------------------------------------------------


def test_one_event_is_sent_to_its_topic_keyed_by_district(validator: EventValidator) -> None:
    kafka = Kafka()
    doc = ex(validator, HAZARD)
    resp = post(service(validator, kafka), GRID_TOKEN, doc)
    assert resp.status == 202
    assert resp.body["accepted"] == [doc["id"]] and resp.body["errors"] == []
    [(topic, key, value, headers)] = kafka.sent
    assert topic == Settings().topic_patrols
    assert key == b"jinshui"
    assert orjson.loads(value) == doc
    assert ("content-type", b"application/cloudevents+json; charset=utf-8") in headers
    assert kafka.dead == []


def test_a_batch_is_sent_in_order(validator: EventValidator) -> None:
    kafka = Kafka()
    docs = [
        ex(validator, FILED, 0),
        ex(validator, FILED, 1),
        ex(validator, "watchfloor.dispute.reported.v1"),
    ]
    resp = post(service(validator, kafka), POLICE_TOKEN, docs)
    assert resp.status == 202
    assert resp.body["accepted"] == [d["id"] for d in docs]
    assert [orjson.loads(v)["id"] for _, _, v, _ in kafka.sent] == [d["id"] for d in docs]
    assert [t for t, _, _, _ in kafka.sent] == [
        Settings().topic_incidents,
        Settings().topic_incidents,
        Settings().topic_disputes,
    ]


def test_reposting_the_same_event_is_accepted_again(validator: EventValidator) -> None:
    """Idempotency is the engine's job (it counts a transition once); ingest just forwards."""
    kafka = Kafka()
    svc = service(validator, kafka)
    doc = ex(validator, HAZARD)
    assert post(svc, GRID_TOKEN, doc).status == 202
    assert post(svc, GRID_TOKEN, doc).status == 202
    assert len(kafka.sent) == 2 and kafka.sent[0][2] == kafka.sent[1][2]


# --- rejected ---------------------------------------------------------------------------


def test_mixed_batch_sends_the_good_and_lists_the_bad(validator: EventValidator) -> None:
    kafka = Kafka()
    good = ex(validator, HAZARD)
    naive = ex(validator, HAZARD, 1, time="2026-04-12T10:00:00", district="jinshui")
    unknown = ex(validator, HAZARD, 0, id="hz-x", district="jinshui")
    unknown["data"]["category"] = "volcano"
    resp = post(service(validator, kafka), GRID_TOKEN, [naive, good, unknown])
    assert resp.status == 400
    assert resp.body["accepted"] == [good["id"]]
    assert [orjson.loads(v)["id"] for _, _, v, _ in kafka.sent] == [good["id"]]
    errors = resp.body["errors"]
    assert [(e["index"], e["id"], e["reason"], e["field"], e["status"]) for e in errors] == [
        (0, naive["id"], "naive_time", "time", 400),
        (2, "hz-x", "schema", "data.category", 400),
    ]
    assert errors[0]["error"].startswith("time has no UTC offset")
    assert "2 of 3 events were not accepted" in resp.body["error"]
    # Each rejected event is dead-lettered, as if read from the "http" topic.
    assert [d.header("wf-reason") for d in kafka.dead] == ["naive_time", "schema"]
    letter = kafka.dead[0]
    assert letter.key == b"jinshui"
    assert orjson.loads(letter.value or b"") == naive
    assert letter.header("wf-source-topic") == "http"
    assert letter.header("wf-source-partition") == "http"
    assert letter.header("wf-source-offset") == f"{resp.body['request']}/0"
    assert letter.header("wf-publisher") == "jinshui-grid-app"


def test_events_outside_the_tokens_remit(validator: EventValidator) -> None:
    kafka = Kafka()
    other_district = ex(validator, HAZARD, 1)  # erqi
    other_type = ex(validator, FILED)  # jinshui, but an incident
    resp = post(service(validator, kafka), GRID_TOKEN, [other_district, other_type])
    assert resp.status == 403
    assert [(e["reason"], e["field"], e["status"]) for e in resp.body["errors"]] == [
        ("district_not_allowed", "district", 403),
        ("type_not_allowed", "type", 403),
    ]
    assert "erqi" in resp.body["errors"][0]["error"]
    assert kafka.sent == [] and kafka.dead == [], (
        "refused events are neither sent nor dead-lettered"
    )


def test_forbidden_and_invalid_together_is_400(validator: EventValidator) -> None:
    kafka = Kafka()
    bad = ex(validator, HAZARD)
    del bad["subject"]
    resp = post(service(validator, kafka), GRID_TOKEN, [ex(validator, HAZARD, 1), bad])
    assert resp.status == 400
    assert [e["status"] for e in resp.body["errors"]] == [403, 400]


@pytest.mark.parametrize(
    ("body", "reason", "phrase"),
    [
        (b"", "empty", "empty"),
        (b"   \n", "empty", "empty"),
        (b"[]", "empty", "batch is empty"),
        (b'{"id": ', "malformed_json", "not JSON"),
        (b'{"id": "\xff"}', "not_utf8", "not UTF-8"),
        (b"42", "schema", "one event object or an array"),
        (b'"text"', "schema", "one event object or an array"),
    ],
)
def test_bodies_that_are_not_events(
    validator: EventValidator, body: bytes, reason: str, phrase: str
) -> None:
    kafka = Kafka()
    resp = post(service(validator, kafka), GRID_TOKEN, body)
    assert resp.status == 400
    assert resp.body["reason"] == reason and phrase in resp.body["error"]
    assert kafka.sent == []


def test_array_items_that_are_not_objects(validator: EventValidator) -> None:
    kafka = Kafka()
    resp = post(service(validator, kafka), GRID_TOKEN, [1, ex(validator, HAZARD)])
    assert resp.status == 400
    assert resp.body["errors"][0]["index"] == 0 and resp.body["errors"][0]["id"] is None
    assert resp.body["accepted_count"] == 1


def test_body_too_large(validator: EventValidator) -> None:
    kafka = Kafka()
    svc = service(validator, kafka, ingest_max_body_bytes=1000)
    doc = ex(validator, HAZARD)
    resp = post(svc, GRID_TOKEN, [doc, doc, doc])
    assert resp.status == 413 and resp.body["limit"] == 1000
    assert "the limit is 1000" in resp.body["error"]
    assert post(svc, GRID_TOKEN, doc).status == 202


def test_batch_too_long(validator: EventValidator) -> None:
    kafka = Kafka()
    svc = service(validator, kafka, ingest_max_batch=2)
    doc = ex(validator, HAZARD)
    resp = post(svc, GRID_TOKEN, [doc] * 3)
    assert resp.status == 413 and "3 events; the limit is 2" in resp.body["error"]
    assert kafka.sent == []
    assert post(svc, GRID_TOKEN, [doc] * 2).status == 202


def test_one_event_too_large(validator: EventValidator) -> None:
    kafka = Kafka()
    svc = service(validator, kafka, max_record_bytes=700)
    small = ex(validator, HAZARD)
    big = ex(validator, HAZARD, 1)
    big["district"] = "jinshui"
    for i in range(4):
        big[f"pad{i}"] = "x" * 100
    v = EventValidator(validator.reference, clock=FixedClock(NOW), max_record_bytes=700)
    svc.validator = v
    resp = post(svc, GRID_TOKEN, [small, big])
    assert resp.status == 400
    assert resp.body["errors"][0]["reason"] == "too_large"
    assert resp.body["accepted"] == [small["id"]]


def test_kafka_not_confirming_is_503_with_retry(validator: EventValidator) -> None:
    kafka = Kafka()
    a, b = ex(validator, FILED, 0), ex(validator, FILED, 1)
    kafka.fail_ids = {b["id"]}
    resp = post(service(validator, kafka), POLICE_TOKEN, [a, b])
    assert resp.status == 503
    assert resp.headers["Retry-After"] == str(ingest.RETRY_AFTER_SECONDS)
    assert resp.body["accepted"] == [a["id"]]
    assert resp.body["not_sent"] == [{"index": 1, "id": b["id"], "error": "broker went away"}]


def test_a_dead_letter_that_cannot_be_written_does_not_change_the_answer(
    validator: EventValidator,
) -> None:
    kafka = Kafka()
    kafka.fail_dead_letters = True
    bad = ex(validator, HAZARD)
    bad["data"]["deadline"] = bad["time"]
    resp = post(service(validator, kafka), GRID_TOKEN, bad)
    assert resp.status == 400
    assert resp.body["errors"][0]["reason"] == "deadline_before_found"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    body=st.binary(max_size=400)
    | st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=10,
    ).map(orjson.dumps),
    auth=st.sampled_from([GRID_TOKEN, POLICE_TOKEN]),
)
def test_bad_input_never_gives_500(validator: EventValidator, body: bytes, auth: str) -> None:
    kafka = Kafka()
    resp = post(service(validator, kafka), auth, body)
    assert resp.status in {202, 400, 403, 413}
    assert resp.body["status"] == resp.status
    orjson.dumps(resp.body)  # always serialisable


# --- command line -----------------------------------------------------------------------


def cli(argv: list[str], settings_: Settings | None = None) -> int:
    p = argparse.ArgumentParser(prog="watchfloor")
    ingest_tokens.register_cli(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    return int(args.func(args, settings_ or Settings()))


def test_cli_new_token_prints_a_working_entry(
    capsys: pytest.CaptureFixture[str], validator: EventValidator
) -> None:
    argv = [
        "ingest-token",
        "new",
        "--name",
        "erqi-mediation",
        "--districts",
        "erqi,zhongyuan",
        "--types",
        "watchfloor.dispute.*",
        "--json",
    ]
    assert cli(argv) == 0
    out = json.loads(capsys.readouterr().out)
    token, entry_doc = out["token"], out["entry"]
    assert entry_doc["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert entry_doc["districts"] == ["erqi", "zhongyuan"]
    # The printed entry, put in the tokens setting, lets that token post.
    kafka = Kafka()
    s = Settings(ingest_tokens=Secret(json.dumps({"tokens": [entry_doc]})))
    svc = ingest.IngestService(
        validator,
        ingest.IngestTokens.from_settings(s, validator.reference),
        s,
        kafka.send,
        clock=FixedClock(NOW),
    )
    resp = asyncio.run(
        svc.handle(
            f"Bearer {token}", orjson.dumps(ex(validator, "watchfloor.dispute.escalated.v1"))
        )
    )
    assert resp.status == 202


def test_cli_new_token_text_shows_token_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest-token", "new", "--name", "n1", "--districts", "*", "--types", "*"]) == 0
    out = capsys.readouterr().out
    token = [w for w in out.split() if w.startswith("wf_")]
    assert len(token) == 1
    assert hashlib.sha256(token[0].encode()).hexdigest() in out


def test_cli_new_token_refuses_unknown_districts() -> None:
    with pytest.raises(SettingsError, match="atlantis"):
        cli(["ingest-token", "new", "--name", "n", "--districts", "atlantis", "--types", "*"])


def test_cli_list_shows_no_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    s = Settings(ingest_tokens=Secret(json.dumps(TOKENS_DOC)))
    assert cli(["ingest-token", "list", "--json"], s) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["city-police", "jinshui-grid-app"]
    full = {e["sha256"] for e in TOKENS_DOC["tokens"]}
    assert not any(r["sha256"] in full for r in rows)


def test_refusals_do_not_echo_what_is_not_a_code(validator: EventValidator) -> None:
    kafka = Kafka()
    doc = ex(validator, HAZARD, district="Zhang San's street")
    resp = post(service(validator, kafka), GRID_TOKEN, doc)
    assert resp.status == 403
    assert "Zhang" not in resp.body["errors"][0]["error"]


# --- expiry and reloading (issue 12, item 5) ----------------------------------------------


def test_an_expired_token_is_401_and_says_so(validator: EventValidator) -> None:
    doc = {"tokens": [
        {**entry("old", GRID_TOKEN, ["*"], ["*"]), "expires": "2026-05-31T23:59:59+00:00"},
        {**entry("new", POLICE_TOKEN, ["*"], ["*"]), "expires": "2026-06-01T00:00:01+00:00"},
    ]}
    kafka = Kafka()
    s = Settings(ingest_tokens=Secret(json.dumps(doc)))
    svc = ingest.IngestService(validator, ingest.IngestTokens.from_settings(s), s, kafka.send,
                               clock=FixedClock(NOW))
    resp = post(svc, GRID_TOKEN, ex(validator, FILED))
    assert (resp.status, resp.reason) == (401, "expired_token")
    assert "expired at 2026-05-31T23:59:59+00:00" in resp.body["error"]
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert post(svc, POLICE_TOKEN, ex(validator, FILED)).status == 202


@pytest.mark.parametrize("expires", ["2026-12-31", "2026-12-31T00:00:00", "tomorrow", 5])
def test_expiry_needs_a_time_with_an_offset(expires: object) -> None:
    doc = {"tokens": [{**entry("t", GRID_TOKEN, ["*"], ["*"]), "expires": expires}]}
    with pytest.raises(SettingsError, match="expires must be"):
        ingest.IngestTokens.from_settings(Settings(ingest_tokens=Secret(json.dumps(doc))))


def test_the_tokens_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [entry("a", GRID_TOKEN, ["*"], ["*"])]}))
    reloads: list[int] = []
    errors: list[int] = []
    source = ingest.TokenSource(
        Settings(ingest_tokens_file=str(path)),
        on_reload=lambda t: reloads.append(len(t)),
        on_reload_error=lambda: errors.append(1),
    )
    assert source.current().find(GRID_TOKEN) is not None
    assert source.current() is source.current(), "unchanged: nothing is read again"

    def rewrite(text: str) -> None:
        part = tmp_path / "tokens.part"
        part.write_text(text)
        part.replace(path)  # a new inode, as an editor or a Kubernetes volume update makes

    rewrite(json.dumps({"tokens": [entry("b", POLICE_TOKEN, ["*"], ["*"])]}))
    assert source.current().find(GRID_TOKEN) is None, "revoked at once"
    assert source.current().find(POLICE_TOKEN) is not None
    rewrite('{"tokens": [')
    assert source.current().find(POLICE_TOKEN) is not None, "a broken file changes nothing"
    assert source.current().find(POLICE_TOKEN) is not None
    path.unlink()
    assert source.current().find(POLICE_TOKEN) is not None
    assert (reloads, len(errors)) == ([1], 2)
    rewrite(json.dumps({"tokens": []}))
    assert len(source.current()) == 0, "an empty list revokes every token"


def test_cli_new_token_with_an_expiry(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ingest-token", "new", "--name", "temp", "--districts", "*", "--types", "*",
            "--expires", "2027-01-01T00:00:00+08:00", "--json"]
    assert cli(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["entry"]["expires"] == "2027-01-01T00:00:00+08:00"
    with pytest.raises(SettingsError, match="expires must be"):
        cli(["ingest-token", "new", "--name", "t", "--districts", "*", "--types", "*",
             "--expires", "next week"])


def test_answers_carry_a_reason_for_the_metrics(validator: EventValidator) -> None:
    from prometheus_client import CollectorRegistry

    from streams.metrics import INGEST_ANSWERS, Metrics

    metrics = Metrics(CollectorRegistry(), ["t"])
    kafka = Kafka()
    s = Settings(ingest_tokens=Secret(json.dumps(TOKENS_DOC)))
    svc = ingest.IngestService(validator, ingest.IngestTokens.from_settings(s), s, kafka.send,
                               clock=FixedClock(NOW), metrics=metrics)
    answers = [
        post(svc, POLICE_TOKEN, ex(validator, FILED)),
        post(svc, POLICE_TOKEN, b"{"),
        post(svc, None, b"{}"),
        post(svc, GRID_TOKEN, ex(validator, FILED)),
        post(svc, POLICE_TOKEN, [ex(validator, FILED)] * 501),
    ]
    assert [(a.status, a.reason) for a in answers] == [
        (202, "accepted"), (400, "malformed_json"), (401, "no_token"), (403, "not_allowed"),
        (413, "batch_too_large"),
    ]
    assert all((a.status, a.reason) in INGEST_ANSWERS for a in answers)
    assert metrics.ingest_events["accepted"]._value.get() == 1
    assert metrics.ingest_events["not_allowed"]._value.get() == 1


def test_a_send_that_kafka_does_not_confirm_in_time_is_503(validator: EventValidator) -> None:
    async def slow(topic: str, key: bytes, value: bytes, headers: Sequence[Any]) -> None:
        await asyncio.sleep(5)

    s = Settings(ingest_tokens=Secret(json.dumps(TOKENS_DOC)), ingest_timeout=0.05)
    svc = ingest.IngestService(validator, ingest.IngestTokens.from_settings(s), s, slow,
                               clock=FixedClock(NOW))
    resp = post(svc, POLICE_TOKEN, ex(validator, FILED))
    assert (resp.status, resp.reason) == (503, "not_confirmed")
    assert resp.body["not_sent"][0]["error"] == "not confirmed in time"
    assert resp.headers["Retry-After"] == str(ingest.RETRY_AFTER_SECONDS)
