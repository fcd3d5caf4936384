"""StateStore: journals and snapshots rebuild the same states, whatever the crash point."""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams import state_journal
from streams.engine import Journal
from streams.events import Event, Kind
from streams.state import DistrictState, Limits, Outcome
from streams.state_journal import (
    JOURNAL_SLOTS,
    SNAPSHOT_AFTER_JOURNALS,
    SNAPSHOT_AFTER_ROWS,
    StateStore,
    _journal_seq,
    chunk_key,
    dump,
    journal_key,
    manifest_key,
)
from streams.subjects import Subject

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=TZ).timestamp()


def events(district: str, n: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = T0 + i * 37.0
        r = rng.random()
        if r < 0.3:
            out.append(Event(Kind.HAZARD_FOUND, f"e{i}", "/t", district, f"h{i}", ts,
                             category="gas", deadline=ts + 3600, major=rng.random() < 0.2))
        elif r < 0.5 and i > 5:
            out.append(Event(Kind.HAZARD_RECTIFIED, f"e{i}", "/t", district,
                             f"h{rng.randrange(i)}", ts))
        elif r < 0.8:
            out.append(Event(Kind.CASE_FILED, f"e{i}", "/t", district, f"c{i}", ts,
                             category="theft"))
        else:
            out.append(Event(Kind.PATROL_COMPLETED, f"e{i}", "/t", district, f"p{i % 50}", ts,
                             ended=ts))
    return out


def count_batch(
    states: dict[str, DistrictState], evs: list[Event], offset0: int
) -> dict[str, Journal]:
    """Apply one batch (records ``offset0``... of partition ``t:0``); its journals."""
    journals: dict[str, Journal] = {}
    for i, ev in enumerate(evs):
        st = states.setdefault(ev.district, DistrictState(ev.district, TZ))
        st.evidence["t:0"] = offset0 + i
        j = journals.setdefault(ev.district, Journal())
        outcome = st.apply(ev)
        if outcome in (Outcome.COUNTED, Outcome.LATE_CLOSED):
            j.rows.append(orjson.dumps(ev.to_journal(outcome)))
        elif outcome is Outcome.DUPLICATE:
            j.dup += 1
        else:
            j.late += 1
    return journals


def run_batches(store: StateStore, states: dict[str, DistrictState], evs: list[Event],
                batch: int, offset0: int = 0, hold: int = 0) -> None:
    """Count ``evs`` in batches and write each batch's journals; with ``hold``, stage them
    and flush every ``hold`` batches (what the worker does with its flush interval)."""
    for n, start in enumerate(range(0, len(evs), batch), 1):
        journals = count_batch(states, evs[start : start + batch], offset0 + start)
        if not hold:
            store.write(states, journals)
            continue
        store.stage(journals)
        if n % hold == 0:
            store.flush(states)


def test_load_rebuilds_identical_state_across_snapshots() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 3000, seed=1) + events("erqi", 500, seed=2)
    evs.sort(key=lambda e: e.ts)
    run_batches(store, states, evs, batch=20)
    # Enough batches that snapshots happened and journal slots wrapped around.
    assert store._progress["jinshui"].seq > JOURNAL_SLOTS
    assert store._progress["jinshui"].gen >= 2
    fresh = StateStore(table, TZ, Limits()).load(table.keys())
    assert set(fresh) == {"jinshui", "erqi"}
    for d, st in states.items():
        assert fresh[d].to_snapshot() == st.to_snapshot()


def test_crash_between_chunks_and_manifest_keeps_old_snapshot() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 400, seed=3)
    run_batches(store, states, evs, batch=5)
    expected = states["jinshui"].to_snapshot()
    # Simulate a snapshot cut short: the chunks of the next generation are written
    # (garbage, other parity) but the manifest never is.
    gen = store._progress["jinshui"].gen
    table[f"jinshui\x1fb{(gen + 1) % 2}\x1f0"] = b"%d\n{broken" % (gen + 1)
    fresh = StateStore(table, TZ, Limits()).load(table.keys())
    assert fresh["jinshui"].to_snapshot() == expected


def test_lost_tail_of_journals_rebuilds_up_to_the_evidence() -> None:
    """A crash after some journals reached Kafka: the state is what they say, evidence included."""
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 200, seed=4)
    run_batches(store, states, evs[:100], batch=10)
    # A deep copy: to_snapshot() shares lists with the live state.
    at_100 = orjson.loads(orjson.dumps(states["jinshui"].to_snapshot()))
    snapshot_of_table = dict(table)
    run_batches(store, states, evs[100:], batch=10, offset0=100)
    # Only the first 100 events' records survived.
    fresh = StateStore(snapshot_of_table, TZ, Limits()).load(snapshot_of_table.keys())
    assert orjson.loads(orjson.dumps(fresh["jinshui"].to_snapshot())) == at_100
    assert fresh["jinshui"].evidence == {"t:0": 99}


def test_snapshot_is_due_before_journal_slots_wrap() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", SNAPSHOT_AFTER_JOURNALS + 1, seed=5)
    run_batches(store, states, evs, batch=1)
    assert manifest_key("jinshui") in table
    prog = store._progress["jinshui"]
    assert prog.seq - prog.base_seq < JOURNAL_SLOTS
    assert journal_key("jinshui", prog.seq) in table


def test_a_batch_takes_a_bounded_number_of_row_due_snapshots_and_defers_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Many districts under the same load fall due in the same batch; the ones over the
    # cap wait for a later batch, and every state still rebuilds exactly.
    cap = 3
    monkeypatch.setattr(state_journal, "SNAPSHOTS_PER_BATCH", cap)
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    n = 64
    names = [f"d{i:03d}" for i in range(n)]
    per_batch = 16  # events of each district per batch: rows fall due before the slots
    length = 4 * SNAPSHOT_AFTER_ROWS
    per_district = {d: events(d, length, seed=i) for i, d in enumerate(names)}
    # Every batch holds the next events of every district: all fall due together.
    rounds = [
        [ev for d in names for ev in per_district[d][k : k + per_batch]]
        for k in range(0, length, per_batch)
    ]
    most = 0
    for evs in rounds:
        gens = {d: store._progress[d].gen if d in store._progress else 0 for d in names}
        run_batches(store, states, evs, batch=len(evs))
        taken = sum(store._progress[d].gen - gens[d] for d in names)
        most = max(most, taken)
        for d in names:
            prog = store._progress[d]
            assert prog.seq - prog.base_seq < JOURNAL_SLOTS  # slots never wrap
    assert most == cap
    assert all(store._progress[d].gen >= 1 for d in names)  # deferred, not skipped
    fresh = StateStore(table, TZ, Limits()).load(table.keys())
    for d, st in states.items():
        assert fresh[d].to_snapshot() == st.to_snapshot()


def test_a_rolling_flush_snapshots_at_the_pace_of_a_whole_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A quarter of the held journals after each batch against all of them every fourth
    # batch: the same journals, so about the same snapshots. With the whole cap at every
    # quarter, the districts over it would snapshot a fifth more often (93 against 78).
    monkeypatch.setattr(state_journal, "SNAPSHOTS_PER_BATCH", 8)
    names = [f"d{i:03d}" for i in range(64)]
    length = 4 * SNAPSHOT_AFTER_ROWS
    per_district = {d: events(d, length, seed=i) for i, d in enumerate(names)}

    def run(rolling: bool) -> tuple[int, dict[str, DistrictState], dict[str, bytes]]:
        table: dict[str, bytes] = {}
        store = StateStore(table, TZ, Limits())
        states: dict[str, DistrictState] = {}
        offset = 0
        for mark, k in enumerate(range(0, length, 16), 1):
            evs = [ev for d in names for ev in per_district[d][k : k + 16]]
            store.stage(count_batch(states, evs, offset), mark)
            offset += len(evs)
            if rolling:
                store.flush(states, store.staged // 4)
            elif mark % 4 == 0:
                store.flush(states)
        store.flush(states)
        return sum(p.gen for p in store._progress.values()), states, table

    whole, _, _ = run(rolling=False)
    rolled, states, table = run(rolling=True)
    assert rolled <= whole * 1.05
    fresh = StateStore(table, TZ, Limits()).load(table.keys())
    for d, st in states.items():
        assert fresh[d].to_snapshot() == st.to_snapshot()


def test_districts_under_the_same_load_reach_their_journal_limit_in_different_batches() -> None:
    limits = [state_journal._journal_limit(f"district-{i}") for i in range(1000)]
    assert max(limits) <= SNAPSHOT_AFTER_JOURNALS < JOURNAL_SLOTS
    assert min(limits) > SNAPSHOT_AFTER_JOURNALS // 2
    # Spread over the whole range: no batch holds more than a few percent of them.
    assert len(set(limits)) == SNAPSHOT_AFTER_JOURNALS // 3
    assert max(limits.count(n) for n in set(limits)) < 0.1 * len(limits)


def test_checkpoint_leaves_no_journal_to_replay() -> None:
    """A clean stop's snapshots: the next load replays nothing and rebuilds the same state,
    and journals written after it still replay on top."""
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 700, seed=5) + events("erqi", 90, seed=6)
    evs.sort(key=lambda e: e.ts)
    run_batches(store, states, evs[:500], batch=7)
    pending = {d for d, p in store._progress.items() if p.seq > p.base_seq}
    assert pending  # the test means something only if journals were waiting
    assert store.checkpoint(states) == len(pending)
    assert store.checkpoint(states) == 0  # nothing new since
    fresh_store = StateStore(table, TZ, Limits())
    fresh = fresh_store.load(table.keys())
    for d, st in states.items():
        assert fresh[d].to_snapshot() == st.to_snapshot()
        prog = fresh_store._progress[d]
        assert prog.rows == 0 and prog.seq == prog.base_seq == store._progress[d].seq
    # Counting goes on from the rebuilt states; a crash then replays the new journals.
    run_batches(fresh_store, fresh, evs[500:], batch=7, offset0=500)
    run_batches(store, states, evs[500:], batch=7, offset0=500)
    again = StateStore(table, TZ, Limits()).load(table.keys())
    for d, st in states.items():
        assert again[d].to_snapshot() == st.to_snapshot()


def test_snapshots_written_before_compression_still_load() -> None:
    """A changelog of plain-JSON snapshots (manifests without "z") rebuilds the same state."""
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 600, seed=7)
    run_batches(store, states, evs, batch=9)
    manifest = orjson.loads(table[manifest_key("jinshui")])
    assert manifest["z"] == 1
    # Rewrite the current snapshot as the previous format wrote it: its JSON, uncompressed,
    # cut into chunks by the same rule, under a manifest without "z".
    parity = manifest["g"] % 2
    compressed = b"".join(
        table[f"jinshui\x1fb{parity}\x1f{i}"].partition(b"\n")[2] for i in range(manifest["n"])
    )
    plain = zlib.decompress(compressed)
    assert orjson.loads(plain)["district"] == "jinshui"
    for i in range(manifest["n"]):
        del table[f"jinshui\x1fb{parity}\x1f{i}"]
    parts = [plain[i : i + 1000] for i in range(0, len(plain), 1000)]
    for i, part in enumerate(parts):
        table[f"jinshui\x1fb{parity}\x1f{i}"] = b"%d\n" % manifest["g"] + part
    table[manifest_key("jinshui")] = orjson.dumps({"g": manifest["g"], "n": len(parts),
                                                   "q": manifest["q"]})
    fresh = StateStore(table, TZ, Limits()).load(table.keys())
    assert fresh["jinshui"].to_snapshot() == states["jinshui"].to_snapshot()


def test_snapshots_are_compressed() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    run_batches(store, states, events("jinshui", 600, seed=8), batch=600)
    store.snapshot(states["jinshui"])
    manifest = orjson.loads(table[manifest_key("jinshui")])
    parity = manifest["g"] % 2
    stored = sum(len(table[f"jinshui\x1fb{parity}\x1f{i}"]) for i in range(manifest["n"]))
    assert stored * 3 < len(orjson.dumps(states["jinshui"].to_snapshot()))


def test_journals_are_compressed_with_their_seq_in_the_clear() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    run_batches(store, states, events("jinshui", 400, seed=5), batch=100)
    raw = table[journal_key("jinshui", 4)]
    head, _, body = raw.partition(b"\n")
    assert head == b"z4"
    journal = orjson.loads(zlib.decompress(body))
    assert journal["q"] == 4 and len(journal["a"]) > 50
    assert len(raw) * 2 < len(orjson.dumps(journal))
    assert _journal_seq(raw) == 4


def test_small_journals_stay_plain_json() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    run_batches(store, states, events("jinshui", 6, seed=5), batch=2)
    raw = table[journal_key("jinshui", 2)]
    assert orjson.loads(raw)["q"] == 2 and len(raw) < state_journal.JOURNAL_COMPRESS_FROM
    assert StateStore(table, TZ, Limits()).load(table.keys())["jinshui"].to_snapshot() == (
        states["jinshui"].to_snapshot()
    )


def test_journals_written_before_compression_still_replay() -> None:
    """A changelog whose journals are all plain JSON (as written before) rebuilds the same
    state."""
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    run_batches(store, states, events("jinshui", 700, seed=11), batch=20)
    base = orjson.loads(table[manifest_key("jinshui")])["q"]
    replayed = 0
    for key in [k for k in table if "\x1fj\x1f" in k and table[k][:1] == b"z"]:
        journal = orjson.loads(zlib.decompress(table[key].partition(b"\n")[2]))
        table[key] = dump(journal)  # as the previous format wrote it
        replayed += journal["q"] > base
    assert replayed > 0  # the load below replays old-format journals, not only a snapshot
    fresh = StateStore(table, TZ, Limits()).load(table.keys())
    assert fresh["jinshui"].to_snapshot() == states["jinshui"].to_snapshot()


def test_snapshots_and_journals_compressed_by_zlib_still_load() -> None:
    """Changelogs written by the versions that compressed with the standard library's zlib
    (its level 1, journals with a 4 KB window) rebuild the same state under ISA-L."""
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    run_batches(store, states, events("jinshui", 700, seed=13), batch=20)
    manifest = orjson.loads(table[manifest_key("jinshui")])
    parity = manifest["g"] % 2
    chunks = [f"jinshui\x1fb{parity}\x1f{i}" for i in range(manifest["n"])]
    plain = zlib.decompress(b"".join(table[k].partition(b"\n")[2] for k in chunks))
    for k in chunks:
        del table[k]
    blob = zlib.compress(plain, 1)
    parts = [blob[i : i + 500] for i in range(0, len(blob), 500)]
    for i, part in enumerate(parts):
        table[f"jinshui\x1fb{parity}\x1f{i}"] = b"%d\n" % manifest["g"] + part
    table[manifest_key("jinshui")] = orjson.dumps({**manifest, "n": len(parts)})
    rewritten = 0
    for key in [k for k in table if "\x1fj\x1f" in k and table[k][:1] == b"z"]:
        head, _, body = table[key].partition(b"\n")
        packer = zlib.compressobj(1, zlib.DEFLATED, 12, 4)
        table[key] = head + b"\n" + packer.compress(zlib.decompress(body)) + packer.flush()
        rewritten += int(head[1:]) > manifest["q"]
    assert rewritten > 0  # the load below replays zlib journals, not only the snapshot
    fresh = StateStore(table, TZ, Limits()).load(table.keys())
    assert fresh["jinshui"].to_snapshot() == states["jinshui"].to_snapshot()


def test_a_damaged_compressed_snapshot_loses_its_district_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    run_batches(store, states, events("jinshui", 300, seed=3) + events("erqi", 300, seed=4),
                batch=50)
    store.checkpoint(states)
    manifest = orjson.loads(table[manifest_key("jinshui")])
    key = f"jinshui\x1fb{manifest['g'] % 2}\x1f0"
    head, _, body = table[key].partition(b"\n")
    table[key] = head + b"\n" + body[:2] + bytes(b ^ 0x5A for b in body[2:40]) + body[40:]
    with caplog.at_level(logging.ERROR, logger="streams.state_journal"):
        fresh = StateStore(table, TZ, Limits()).load(table.keys())
    assert set(fresh) == {"erqi"}
    assert fresh["erqi"].to_snapshot() == states["erqi"].to_snapshot()
    assert "State of district jinshui could not be rebuilt" in caplog.text


def test_journal_seq_is_read_from_the_head_or_the_whole_record() -> None:
    written = dump({"q": 1234, "e": {"t:0": 9}, "a": [[1, "c1", 1.0]], "l": 0, "u": 0})
    assert _journal_seq(written) == 1234
    # Any other layout of the same record (another writer's key order, spaces) still reads.
    assert _journal_seq(b'{"e": {"t:0": 9}, "q": 77, "a": []}') == 77
    assert _journal_seq(b'{"q": 5, "a": []}') == 5


def test_rebuilt_state_derives_open_counts_overdue_heap_and_closings() -> None:
    """What a rebuild derives from the subjects, against the rules applied one by one."""
    from streams.state import (
        _IS_OPEN,
        CLOSED,
        DAY_SECONDS,
        ESCALATED,
        RECTIFIED,
        RESOLVED,
        VERIFIED,
    )

    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    run_batches(store, states, events("jinshui", 900, seed=9), batch=50)
    store.checkpoint(states)  # so the load replays no journal: all it holds is derived
    st = StateStore(table, TZ, Limits()).load(table.keys())["jinshui"]
    # Patrol runs are keys by hour (streams/identities.py), with nothing derived from them.
    groups: tuple[dict[str, Subject], ...] = (st.cases, st.disputes, st.hazards, {}, st.accidents)
    open_of = [[sid for sid, s in g.items() if _IS_OPEN[i](s.flags)] for i, g in enumerate(groups)]
    assert open_of[0] and open_of[2] and len(open_of[2]) < len(st.hazards)  # both kinds exist
    assert (st.open_cases, st.open_disputes, st.open_hazards) == tuple(map(len, open_of[:3]))
    assert sorted(st._due.entries()) == sorted(
        (st.hazards[sid].deadline, st.hazards[sid].round, sid) for sid in open_of[2]
    )
    assert st._due.entries()[0] == min(st._due.entries())  # a heap
    # The closing transitions of docs/design.md; patrols and accidents are closed once seen.
    closings = (CLOSED, RESOLVED | ESCALATED, RECTIFIED | VERIFIED, None, None)
    for i, g in enumerate(groups):
        expected: dict[int, list[str]] = {}
        for sid, s in g.items():
            # Closed ones only: a step whose opening never came is kept for the retention.
            if sid not in open_of[i] and (closings[i] is None or s.flags & closings[i]):
                expected.setdefault(int(s.last // DAY_SECONDS), []).append(sid)
        assert st._closings[i] == expected
        assert st._closing_days[i] == sorted(expected)


class _Mirrored(dict):  # type: ignore[type-arg]
    """A table as the worker has it: each write goes to its local copy (bytes keys) and to
    a changelog (here, the latest value of each key, as compaction leaves it)."""

    def __init__(self) -> None:
        super().__init__()
        self.local: dict[bytes, bytes] = {}
        self.changelog: dict[str, bytes] = {}

    def __setitem__(self, key: str, value: bytes) -> None:
        self.local[key.encode()] = value
        self.changelog[key] = value

    def __getitem__(self, key: str) -> bytes:
        return self.local[key.encode()]

    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return self.local.get(key.encode(), default)

    def __delitem__(self, key: str) -> None:
        # As a Faust table deletes: the tombstone first, then the local copy (KeyError
        # when that no longer holds the key).
        self.changelog.pop(key, None)
        del self.local[key.encode()]

    def pop(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        # As ``pop`` on a Faust table (MutableMapping's): a key the local copy no longer
        # holds is not found, and nothing reaches the changelog.
        try:
            value = self[key]
        except KeyError:
            return default
        del self[key]
        return value

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (k.decode() for k in list(self.local))

    def keys(self):  # type: ignore[no-untyped-def]
        return list(iter(self))


def test_journals_a_snapshot_covers_leave_the_local_copy_but_not_the_changelog() -> None:
    table = _Mirrored()
    store = StateStore(table, TZ, Limits(), local=table.local)
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 3000, seed=13) + events("erqi", 3000, seed=14)
    run_batches(store, states, sorted(evs, key=lambda e: e.ts), batch=40)

    def journals(keys: Iterable[str]) -> dict[int, str]:
        return {_journal_seq(table.changelog[k]): k for k in keys if "\x1fj\x1f" in k}

    for d in ("jinshui", "erqi"):
        base = orjson.loads(table.changelog[manifest_key(d)])["q"]
        local = journals(k.decode() for k in table.local if k.startswith(d.encode()))
        logged = journals(k for k in table.changelog if k.startswith(d))
        assert base > 0 and all(seq > base for seq in local)  # only uncovered ones kept
        assert any(seq <= base for seq in logged)  # the changelog still has covered ones
        assert set(local) == {seq for seq in logged if seq > base}
    # A rebuild from the changelog (a restart) and from the local copy (a rebalance that
    # kept the partition) both give the live states, the truth built event by event.
    for source in (dict(table.changelog), table):
        rebuilt = StateStore(source, TZ, Limits()).load(source.keys())
        for d, st in states.items():
            assert rebuilt[d].to_snapshot() == st.to_snapshot()


def test_the_snapshot_before_the_latest_leaves_the_local_copy_but_not_the_changelog() -> None:
    table = _Mirrored()
    store = StateStore(table, TZ, Limits(), local=table.local, chunk_bytes=512)
    states: dict[str, DistrictState] = {}
    run_batches(store, states, events("jinshui", 3000, seed=16), batch=40)
    manifest = orjson.loads(table.changelog[manifest_key("jinshui")])
    gen, n = manifest["g"], manifest["n"]
    latest, before = gen % 2, 1 - gen % 2
    assert gen >= 2 and n > 1

    def chunks(keys: Iterable[str], parity: int) -> list[str]:
        return sorted((k for k in keys if k.startswith(f"jinshui\x1fb{parity}\x1f")),
                      key=lambda k: int(k.rsplit("\x1f", 1)[1]))

    local = [k.decode() for k in table.local]
    assert chunks(local, latest) == [chunk_key("jinshui", latest, i) for i in range(n)]
    assert chunks(local, before) == []
    assert chunks(table.changelog, before)  # a crash before the next manifest reads them
    for source in (dict(table.changelog), table):  # a restart; a rebalance keeping it
        rebuilt = StateStore(source, TZ, Limits()).load(source.keys())
        assert rebuilt["jinshui"].to_snapshot() == states["jinshui"].to_snapshot()
    # A snapshot in fewer chunks than the last of its parity: the chunks left over leave
    # the changelog too, though the local copy no longer held them.
    store.chunk_bytes = 1 << 20
    store.snapshot(states["jinshui"])
    assert chunks(table.changelog, before) == [chunk_key("jinshui", before, 0)]
    rebuilt = StateStore(dict(table.changelog), TZ, Limits()).load(table.changelog.keys())
    assert rebuilt["jinshui"].to_snapshot() == states["jinshui"].to_snapshot()


def test_a_rebuild_drops_the_covered_journals_from_the_local_copy() -> None:
    table = _Mirrored()
    states: dict[str, DistrictState] = {}
    run_batches(StateStore(table, TZ, Limits()), states, events("jinshui", 3000, seed=15),
                batch=40)  # written without a local copy: covered journals stay
    base = orjson.loads(table.changelog[manifest_key("jinshui")])["q"]
    covered = [k for k in table.local if b"\x1fj\x1f" in k and _journal_seq(table.local[k]) <= base]
    assert covered
    rebuilt = StateStore(table, TZ, Limits(), local=table.local).load(table.keys())
    assert rebuilt["jinshui"].to_snapshot() == states["jinshui"].to_snapshot()
    assert not any(k in table.local for k in covered)


def test_held_journals_are_written_once_per_district_and_rebuild_the_same_state() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 400, seed=11) + events("erqi", 60, seed=12)
    evs.sort(key=lambda e: e.ts)
    run_batches(store, states, evs[:20], batch=5, hold=4)  # 4 batches, one flush
    # One journal per district for the four batches, its rows in the order counted.
    keys = sorted(k for k in table if "\x1fj\x1f" in k)
    assert keys == sorted(journal_key(d, 1) for d in {e.district for e in evs[:20]})
    journal = state_journal._journal(table[journal_key("jinshui", 1)])
    # Its rows span the four batches, in the order counted.
    index = {e.subject: i for i, e in enumerate(evs[:20]) if e.district == "jinshui"}
    where = [index[row[1]] for row in journal["a"]]
    assert where == sorted(where) and where[0] < 5 and where[-1] >= 15
    assert journal["e"] == {"t:0": max(index.values())}
    run_batches(store, states, evs[20:], batch=5, offset0=20, hold=3)
    store.flush(states)  # what the timer does with the last, partial hold
    rebuilt = StateStore(table, TZ, Limits()).load(table.keys())
    assert rebuilt.keys() == states.keys()
    for d, st in states.items():
        assert rebuilt[d].to_snapshot() == st.to_snapshot()


def test_a_partial_flush_writes_the_longest_held_and_tells_the_oldest_hold_left() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states = {d: DistrictState(d, TZ) for d in ("a", "b", "c")}
    row = orjson.dumps([1, "c", T0, "theft", None, False, False, None, 0])
    assert store.held_since() is None
    store.stage({"b": Journal([row]), "a": Journal([row] * 2)}, 1)
    store.stage({"c": Journal([row] * 3), "b": Journal([row] * 4)}, 2)
    # Held since: b and a from batch 1, c from batch 2; b holds 5 rows.
    assert (store.held_since(), store.held_through(1), store.held_through(2)) == (1, 2, 3)
    assert store.staged_rows_max == 5
    store.flush(states, 1)
    assert [k for k in table if "\x1fj\x1f" in k] == [journal_key("b", 1)]
    assert len(state_journal._journal(table[journal_key("b", 1)])["a"]) == 5
    assert (store.staged, store.held_since(), store.staged_rows_max) == (2, 1, 3)
    store.stage({"b": Journal([row])}, 3)  # held again: now the newest hold
    store.flush(states, 1)
    assert journal_key("a", 1) in table
    assert (store.held_since(), store.held_through(2), store.held_through(3)) == (2, 1, 2)
    store.flush(states, 0)
    assert store.staged == 2
    store.flush(states)
    assert (store.staged, store.held_since(), store.staged_rows_max) == (0, None, 0)
    assert {journal_key("c", 1), journal_key("b", 2)} <= table.keys()


@pytest.mark.parametrize("crash_after", [3, 11, 26, 40])
def test_after_partial_flushes_a_restart_from_the_oldest_hold_counts_every_event_once(
    crash_after: int,
) -> None:
    # What the worker acks is every batch marked below the oldest hold; a crash then
    # re-reads from that batch, and each district skips what its journals hold.
    rng = random.Random(crash_after)
    evs = events("jinshui", 300, seed=31) + events("erqi", 200, seed=32)
    evs += events("zhongyuan", 100, seed=33)
    evs.sort(key=lambda e: e.ts)
    size = 15
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    for mark, start in enumerate(range(0, len(evs), size), 1):
        store.stage(count_batch(states, evs[start : start + size], start), mark)
        store.flush(states, rng.choice((0, 0, 1)))
        if mark == crash_after:
            break
    oldest = store.held_since()
    assert oldest is not None and oldest < crash_after  # holds reach back over batches
    resume = (oldest - 1) * size
    rebuilt = StateStore(dict(table), TZ, Limits()).load(list(table))
    for offset in range(resume, len(evs)):
        ev = evs[offset]
        st = rebuilt.setdefault(ev.district, DistrictState(ev.district, TZ))
        if offset <= st.evidence.get("t:0", -1):
            continue
        st.evidence["t:0"] = offset
        st.apply(ev)
    # The truth: every event applied once, in order, with no store at all.
    truth: dict[str, DistrictState] = {}
    for offset, ev in enumerate(evs):
        st = truth.setdefault(ev.district, DistrictState(ev.district, TZ))
        st.evidence["t:0"] = offset
        st.apply(ev)
    assert rebuilt.keys() == truth.keys()
    for d, st in truth.items():
        assert rebuilt[d].to_snapshot() == st.to_snapshot(), d


def test_held_journals_count_the_most_rows_one_district_holds() -> None:
    store = StateStore({}, TZ, Limits())
    row = orjson.dumps([1, "c", T0, "theft", None, False, False, None, 0])
    store.stage({"a": Journal([row] * 3, late=1), "b": Journal([row])})
    store.stage({"a": Journal([row] * 2, dup=2)})
    assert (store.staged, store.staged_rows_max) == (2, 5)
    held = store._staged["a"]
    assert (len(held.rows), held.late, held.dup) == (5, 1, 2)
    store.forget(["a"])
    assert store.staged == 1
    store.discard()
    assert (store.staged, store.staged_rows_max) == (0, 0)


def test_discarded_journals_leave_the_table_as_it_was() -> None:
    """A rebalance drops held journals: the table rebuilds the state of the last flush."""
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 60, seed=13)
    run_batches(store, states, evs[:30], batch=10, hold=3)
    written = dict(table)
    # Serialised now: a snapshot shares lists with the live state, which goes on counting.
    at_flush = orjson.loads(orjson.dumps({d: st.to_snapshot() for d, st in states.items()}))
    run_batches(store, states, evs[30:], batch=10, offset0=30, hold=10)  # held, not flushed
    assert store.staged == 1
    store.discard()
    store.flush(states)
    assert table == written
    rebuilt = StateStore(table, TZ, Limits()).load(table.keys())
    now = {d: st.to_snapshot() for d, st in rebuilt.items()}
    assert orjson.loads(orjson.dumps(now)) == at_flush


def test_checkpoint_snapshots_the_districts_whose_journals_are_held() -> None:
    table: dict[str, bytes] = {}
    store = StateStore(table, TZ, Limits())
    states: dict[str, DistrictState] = {}
    evs = events("jinshui", 50, seed=14) + events("erqi", 50, seed=15)
    evs.sort(key=lambda e: e.ts)
    run_batches(store, states, evs, batch=10, hold=100)  # nothing written yet
    assert not table and store.staged == 2
    assert store.checkpoint(states) == 2
    assert store.staged == 0
    assert not any("\x1fj\x1f" in k for k in table)  # snapshots alone
    fresh_store = StateStore(table, TZ, Limits())
    fresh = fresh_store.load(table.keys())
    for d, st in states.items():
        assert fresh[d].to_snapshot() == st.to_snapshot()
