"""History: merge is idempotent and order-independent, missing_for, the causal
buffer, and the index database (reopen == rebuild; stale or corrupt rebuilt)."""

import hashlib
import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings, strategies as st

from p2p import limits
from p2p.history.event import Event
from p2p.history.history import INDEX_NAME, History
from p2p.history.log import EventLog
from p2p.history.precedence import winner

ORIGINS = ["A" * 32, "B" * 32, "C" * 32, "D" * 32]
PATHS = ["a.txt", "b.txt", "dir/c.txt"]
EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "150"))


class SimulatedPeer:
    """An origin that makes events from what it has seen (no disk): the reference model."""

    def __init__(self, origin):
        self.origin = origin
        self.known = {}  # id -> Event

    def heads(self, path):
        events = [e for e in self.known.values() if e.path == path]
        superseded = {p for e in events for p in e.parents}
        return [e for e in events if e.id not in superseded]

    def make(self, path, op, clock):
        seq = 1 + sum(1 for e in self.known.values() if e.origin == self.origin)
        lamport = 1 + max((e.lamport for e in self.known.values()), default=0)
        current = winner(self.heads(path))
        if op == "delete" and (current is None or current.is_delete):
            op = "write"
        if op == "delete":
            fields = dict(type="delete", size=0, hash="", blocks=())
        else:
            content = f"{self.origin}{seq}".encode()
            digest = hashlib.sha256(content).hexdigest()
            fields = dict(type="create" if current is None or current.is_delete else "update",
                          size=len(content), hash=digest, blocks=((digest, len(content)),))
        event = Event(id=f"{self.origin}:{seq}", origin=self.origin, seq=seq, lamport=lamport, kind="file",
                      path=path, mode=0o644, mtime=clock * 1000, parents=tuple(sorted(e.id for e in self.heads(path))),
                      time=float(clock), **fields)
        self.known[event.id] = event
        return event


@contextmanager
def no_fsync():
    """Hypothesis runs hundreds of histories: durability is tested elsewhere, skip the disk flushes."""
    with mock.patch.object(os, "fsync"), mock.patch.object(os, "fdatasync"):
        yield


operations = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(PATHS), st.sampled_from(["write", "delete"]),
                                st.integers(0, 3)), min_size=1, max_size=25)


def simulate(ops):
    peers = [SimulatedPeer(o) for o in ORIGINS]
    for clock, (who, path, op, learn_from) in enumerate(ops, start=1):
        peers[who].known.update(peers[learn_from].known)  # causally closed: a union of closed sets
        peers[who].make(path, op, clock)
    everything = {}
    for peer in peers:
        everything.update(peer.known)
    return list(everything.values())


def reference_state(events):
    model = SimulatedPeer("Z" * 32)
    model.known = {e.id: e for e in events}
    paths = {e.path for e in events}
    heads = {p: sorted(e.id for e in model.heads(p)) for p in paths}
    vv = {}
    for e in events:
        vv[e.origin] = max(vv.get(e.origin, 0), e.seq)
    return heads, vv


def state_of(history):
    return ({p: sorted(e.id for e in history.heads(p)) for p in history.paths()},
            history.vv, {p: e.id for p, e in history.tree().items()}, history.lamport)


@settings(max_examples=EXAMPLES, deadline=None)
@given(ops=operations, data=st.data())
def test_fuzz_merge_any_order_with_duplicates_gives_the_same_state(ops, data):
    events = simulate(ops)
    order = data.draw(st.permutations(events))
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=10))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events) + len(duplicates)), max_size=4)))
    stream = list(order) + duplicates
    batches = [stream[i:j] for i, j in zip([0] + cuts, cuts + [len(stream)])]
    with tempfile.TemporaryDirectory() as first_home, tempfile.TemporaryDirectory() as second_home, no_fsync():
        in_order = History.open(Path(first_home), "Q" * 32)
        accepted, rejected = in_order.merge(sorted(events, key=lambda e: e.time))
        assert len(accepted) == len(events) and rejected == []
        shuffled = History.open(Path(second_home), "Q" * 32)
        appended = []
        for batch in batches:
            items = [e.to_dict() if i % 2 else e for i, e in enumerate(batch)]
            new, rejected = shuffled.merge(items)
            assert rejected == []
            appended += new
        assert sorted(e.id for e in appended) == sorted(e.id for e in events)  # each exactly once
        seen = set()
        for event in appended:  # causal order: parents and earlier seqs first
            assert all(p in seen for p in event.parents) and (event.seq == 1 or f"{event.origin}:{event.seq - 1}" in seen)
            seen.add(event.id)
        heads, vv = reference_state(events)
        assert state_of(in_order) == state_of(shuffled)
        assert state_of(shuffled)[0] == heads and shuffled.vv == vv
        assert shuffled.lamport == max(e.lamport for e in events) and shuffled.pending_count == 0
        assert shuffled.merge(events) == ([], [])  # idempotent
        shuffled.close()
        reopened = History.open(Path(second_home), "Q" * 32)
        assert state_of(reopened) == state_of(in_order)
        reopened.close()
        in_order.close()


@settings(max_examples=EXAMPLES, deadline=None)
@given(ops=operations, data=st.data())
def test_fuzz_missing_for_is_exactly_what_the_peer_lacks(ops, data):
    events = simulate(ops)
    with tempfile.TemporaryDirectory() as home, no_fsync():
        history = History.open(Path(home), "Q" * 32)
        history.merge(data.draw(st.permutations(events)))
        log_order = [e.id for e in history.events()]
        peer_vv = {o: data.draw(st.integers(0, n + 1)) for o, n in history.vv.items()}
        expected = [i for i in log_order if int(i.split(":")[1]) > peer_vv.get(i.split(":")[0], 0)]
        assert [e.id for e in history.missing_for(peer_vv)] == expected
        assert [e.id for e in history.missing_for({})] == log_order
        assert list(history.missing_for(history.vv)) == []
        history.close()


@pytest.fixture
def home(tmp_path):
    return tmp_path


def scripted(count=30, seed=1):
    rng = random.Random(seed)
    return simulate([(rng.randrange(4), rng.choice(PATHS), rng.choice(["write", "write", "delete"]), rng.randrange(4))
                     for _ in range(count)])


def test_make_local_stamps_and_supersedes(home):
    history = History.open(home, ORIGINS[0])
    remote = scripted(10)
    history.merge(remote)
    lamport = history.lamport
    parents = tuple(e.id for e in history.heads("a.txt"))
    digest = hashlib.sha256(b"x").hexdigest()
    event = history.make_local("update", "file", "a.txt", size=1, hash=digest, blocks=[(digest, 1)], mode=0o600,
                               mtime=5, time=99.0)
    assert event.origin == ORIGINS[0] and event.seq == history.vv[ORIGINS[0]]
    assert event.lamport == lamport + 1 and event.parents == parents
    assert history.heads("a.txt") == (event,) and history.current("a.txt") == event
    assert history.get(event.id) == event and history.knows(event.id)
    gone = history.make_local("delete", "file", "a.txt", time=100.0)
    assert history.heads("a.txt") == (gone,) and "a.txt" not in history.tree()
    with pytest.raises(ValueError, match="not in the history"):
        history.make_local("create", "dir", "new", parents=["B" * 32 + ":999"], time=1.0)
    with pytest.raises(TypeError, match="colour"):   # a field no event has is no silent attribute
        history.make_local("create", "dir", "new", colour="red", time=1.0)
    history.close()


def test_local_events_are_durable(home, monkeypatch):
    history = History.open(home, ORIGINS[0])
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    history.make_local("create", "dir", "photos", mode=0o755, time=1.0)
    assert synced  # fsynced before make_local returned
    synced.clear()
    history.merge(scripted(5))
    assert synced == []  # remote events wait for the periodic sync()
    history.sync()
    assert synced
    history.close()


def test_merge_rejects_invalid_and_buffers_gaps(home):
    history = History.open(home, "Q" * 32)
    events = [e for e in scripted(20) if e.origin == ORIGINS[0]]
    accepted, rejected = history.merge([events[1].to_dict(), {"id": "junk"}, "text"])
    assert accepted == [] and str([reason for _, reason in rejected][1]).startswith("an event is a JSON object")
    assert len(rejected) == 2 and history.pending_count == 1 and history.vv == {}
    accepted, rejected = history.merge([events[0]])
    assert [e.id for e in accepted] == [events[0].id, events[1].id] and history.pending_count == 0


def test_causal_buffer_is_bounded(home, monkeypatch):
    monkeypatch.setattr(limits, "MAX_PENDING_EVENTS", 3)
    history = History.open(home, "Q" * 32)
    chain = sorted(simulate([(1, PATHS[i % 3], "write", 1) for i in range(6)]), key=lambda e: e.seq)
    accepted, rejected = history.merge(chain[1:6])
    assert accepted == [] and history.pending_count == 3
    assert [item.id for item, _ in rejected] == [chain[5].id, chain[4].id]
    assert all("buffer full" in reason for _, reason in rejected)
    accepted, rejected = history.merge(chain[:1])  # the gap fills: the buffered ones follow
    assert [e.id for e in accepted] == [e.id for e in chain[:4]] and rejected == []


def test_causal_buffer_is_bounded_in_bytes(home, monkeypatch):
    """Few events, each large (many blocks): the byte bound refuses them long
    before the count bound would, and the buffer's bytes go back to 0."""
    origin = "L" * 32
    blocks = [[hashlib.sha256(b"%d" % i).hexdigest(), 1] for i in range(250)]

    def large(seq):
        return Event.from_dict({"id": f"{origin}:{seq}", "origin": origin, "seq": seq, "lamport": seq,
                                "type": "create", "kind": "file", "path": f"big-{seq}", "size": len(blocks),
                                "mode": 0o644, "mtime": 0, "hash": "0" * 64, "blocks": blocks, "parents": [],
                                "time": 1.0})

    def size(seq):
        return len(large(seq).to_json().encode())

    each = size(2)
    assert each > 15_000
    monkeypatch.setattr(limits, "MAX_PENDING_BYTES", 3 * each + each // 2)
    history = History.open(home, "Q" * 32)
    accepted, rejected = history.merge([large(seq) for seq in range(2, 8)], source="s")   # seq 1 never came
    assert accepted == [] and history.pending_count == 3 and history.pending_bytes == 3 * each
    assert [item.seq for item, _ in rejected] == [7, 6, 5]
    assert all("bytes of events wait for parents" in reason for _, reason in rejected)
    history.merge([large(1), *(large(seq) for seq in range(5, 8))])   # the gap fills: all follow
    assert history.pending_count == 0 and history.pending_bytes == 0 and history.vv == {origin: 7}
    history.merge([large(seq) for seq in range(9, 11)], source="s")
    assert history.pending_bytes == size(9) + size(10)
    assert history.drop_pending("s") == 2 and history.pending_bytes == 0


def test_parent_gap_waits_even_when_seq_is_next(home):
    history = History.open(home, "Q" * 32)
    events = scripted(40)
    waiting = next(e for e in events if e.seq == 1 and any(not p.startswith(e.origin) for p in e.parents))
    accepted, _ = history.merge([waiting])
    assert accepted == [] and history.pending_count == 1
    history.merge(events)
    assert history.pending_count == 0 and history.knows(waiting.id)


def test_index_reopen_equals_full_rebuild(home, monkeypatch):
    events = scripted(200)
    history = History.open(home, "Q" * 32)
    history.merge(events[:150])
    history.close()
    assert (home / ".p2p" / INDEX_NAME).exists()
    history = History.open(home, "Q" * 32)
    history.merge(events[150:])  # saved with its batch
    history.sync()
    expected = state_of(history)
    history._log.close()  # crash: no close()
    history._index.close()
    replayed = []
    original = History._replay
    monkeypatch.setattr(History, "_replay", lambda self, start: replayed.append(start) or original(self, start))
    from_index = History.open(home, "Q" * 32)
    assert replayed[-1] == (home / "events.jsonl").stat().st_size and from_index.replayed == 0
    assert state_of(from_index) == expected
    assert [e.id for e in from_index.missing_for({})] == [e.id for e in from_index.events()]
    from_index.close()
    (home / ".p2p" / INDEX_NAME).unlink()
    rebuilt = History.open(home, "Q" * 32)
    assert replayed[-1] == 0 and state_of(rebuilt) == expected
    rebuilt.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other format", "log rewritten", "log shorter"])
def test_stale_or_corrupt_index_is_rebuilt(home, damage, caplog):
    events = scripted(80)
    history = History.open(home, "Q" * 32)
    history.merge(events[:60])
    history.close()
    db = home / ".p2p" / INDEX_NAME
    log_path = home / "events.jsonl"
    if damage == "garbage":
        db.write_bytes(b"\x00\x01 not a database" * 100)
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:1000])
    elif damage == "other format":
        import sqlite3
        with sqlite3.connect(db) as raw:
            raw.execute("UPDATE meta SET value = 'p2p-index-0' WHERE key = 'format'")
    else:  # the log changed under the index: a different history with the same origins
        os.unlink(log_path)
        log = EventLog(log_path)
        chosen = [e for e in events if e.origin == ORIGINS[2]] if damage == "log shorter" else sorted(
            events, key=lambda e: (e.lamport, e.id))[:60]
        log.append([e for e in chosen if all(p in {c.id for c in chosen} for p in e.parents)])
        log.close()
    reopened = History.open(home, "Q" * 32)
    reference = History.open(home / "ref", "Q" * 32)
    reference.merge(list(reopened.events()))
    assert state_of(reopened) == state_of(reference) and reopened.replayed == len(reopened)
    assert "rebuilding it from events.jsonl" in caplog.text
    reopened.close()
    reference.close()
    caplog.clear()
    again = History.open(home, "Q" * 32)   # the rebuilt database is used
    assert again.replayed == 0 and state_of(again) == state_of(reopened.__class__.open(home / "ref", "Q" * 32))
    assert "rebuilding" not in caplog.text
    again.close()


def test_read_only_history_beside_a_writer(home):
    writer = History.open(home, "Q" * 32)
    writer.merge(scripted(20))
    writer.sync()
    reader = History.open(home, None, read_only=True)
    assert state_of(reader) == state_of(writer)
    with pytest.raises(PermissionError):
        reader.merge([])
    reader.close()
    writer.close()


def test_open_rejects_bad_device_id(home):
    with pytest.raises(ValueError, match="device id"):
        History.open(home, "lowercase")


@settings(max_examples=EXAMPLES, deadline=None)
@given(ops=operations, data=st.data())
def test_fuzz_differing_names_exactly_the_paths_whose_heads_are_not_the_recorded_event(ops, data):
    events = simulate(ops)
    unknown = ["", ORIGINS[0] + ":999"]   # (an entry names an event of its own path, as the local state's do)
    with tempfile.TemporaryDirectory() as home, no_fsync():
        history = History.open(Path(home), "Q" * 32)
        history.merge(events)
        heads = {p: [e.id for e in history.heads(p)] for p in history.paths()}
        recorded = {}
        for path in PATHS + ["never/synced"]:
            choice = data.draw(st.sampled_from(["none", "head", "other"]))
            if choice == "head" and heads.get(path):
                recorded[path] = heads[path][0]
            elif choice == "other":
                recorded[path] = data.draw(st.sampled_from([e.id for e in events if e.path == path] + unknown))
        expected = {p for p, h in heads.items() if not (len(h) == 1 and recorded.get(p) == h[0])}
        found = list(history.differing(recorded.items()))
        assert sorted(found) == sorted(expected)
        history.close()
