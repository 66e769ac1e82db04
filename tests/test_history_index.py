"""The history's index database (.p2p/index.db): it matches a dict (fuzz);
each appended batch is one transaction; a start replays only the log's tail
beyond what it covers; a crash in the middle of a batch or of a rebuild loses
nothing; a database ahead of the log (a crash cut the log's unsynced tail),
over another log or with a damaged page is rebuilt; a batch writes only the
rows it changes; the start and ``differing`` read no line of the log; a
batch's look-up of its paths' heads (``heads_many``) agrees with ``heads``
across the index's saves."""

import os
import tempfile
from array import array
from unittest import mock
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from p2p import limits
from p2p.history.history import INDEX_NAME, History
from p2p.history.index import IndexDB
from p2p.history.log import EventLog
from tests.test_history import EXAMPLES, SimulatedPeer, scripted, state_of

Q = "Q" * 32


def reference_state(home, tmp_path):
    """The state a fresh history holding exactly the events of ``home``'s log has."""
    log = EventLog(home / "events.jsonl", read_only=True)
    events = [event for _, event in log.iter_from(0, log.size)]
    log.close()
    reference = History.open(tmp_path / "reference", Q)
    reference.merge(events)
    state = state_of(reference)
    reference.close()
    return state, len(events)


def in_child(work) -> int:
    """Run ``work()`` in a forked child that dies with ``os._exit`` (a kill:
    no close, no flush, no atexit); returns its exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            work()
        finally:
            os._exit(3)   # work() is expected to die first
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("where", ["after the log append", "inside the transaction"])
def test_a_crash_in_the_middle_of_a_batch_is_replayed_from_the_log(tmp_path, where):
    home, events = tmp_path / "home", scripted(120)

    def work():
        history = History.open(home, Q)
        history.merge(events[:80])
        history.sync()
        if where == "after the log append":
            IndexDB.flush = lambda self, offsets, meta: os._exit(9)
        else:   # the heads and offsets are written, the transaction is not committed
            IndexDB._set_meta = lambda self, values: os._exit(9)
        history.merge(events[80:])
        history.sync()
        os._exit(4)
    assert in_child(work) == 9
    reopened = History.open(home, Q)
    expected, count = reference_state(home, tmp_path)
    assert count == 120 and reopened.replayed == 40          # only the batch the crash cut off
    assert state_of(reopened) == expected
    reopened.close()
    again = History.open(home, Q)
    assert again.replayed == 0 and state_of(again) == expected
    again.close()


def test_a_crash_in_the_middle_of_a_rebuild_resumes_without_duplicates(tmp_path, monkeypatch, caplog):
    home, events = tmp_path / "home", scripted(150)
    history = History.open(home, Q)
    for start in range(0, 150, 10):
        history.merge(events[start:start + 10])
    history.close()
    (home / ".p2p" / INDEX_NAME).unlink()
    monkeypatch.setattr(limits, "INDEX_REPLAY_FLUSH", 2)   # a flush every few events of the rebuild
    flushes = []
    real_flush = IndexDB.flush

    def flush_then_die(self, offsets, meta):
        real_flush(self, offsets, meta)
        flushes.append(1)
        if len(flushes) == 5:
            os._exit(9)
    monkeypatch.setattr(IndexDB, "flush", flush_then_die)
    assert in_child(lambda: History.open(home, Q)) == 9
    monkeypatch.setattr(IndexDB, "flush", real_flush)
    caplog.clear()
    resumed = History.open(home, Q)
    expected, _ = reference_state(home, tmp_path)
    assert state_of(resumed) == expected and "duplicate" not in caplog.text
    assert 0 < resumed.replayed < 150                        # the part the first rebuild saved is kept
    resumed.close()


@pytest.mark.parametrize("how", ["cut", "cut and grown again"])
def test_an_index_ahead_of_the_log_is_rebuilt_and_never_trusted(tmp_path, how, caplog):
    home, events = tmp_path / "home", scripted(100)
    history = History.open(home, Q)
    history.merge(events[:60])
    history.merge(events[60:])
    history.close()
    log_path = home / "events.jsonl"
    lines = log_path.read_bytes().splitlines(keepends=True)
    kept = lines[:60]              # a power loss took the unsynced tail; the database had it
    if how == "cut and grown again":   # ... and other events were appended before this start
        other = SimulatedPeer("E" * 32)
        kept += [(other.make(f"other/{i % 7}", "write", i).to_json() + "\n").encode() for i in range(100)]
        assert sum(map(len, kept)) > sum(map(len, lines))
    log_path.write_bytes(b"".join(kept))
    reopened = History.open(home, Q)
    assert "rebuilding it from events.jsonl" in caplog.text
    assert ("ahead of the log" if how == "cut" else "another log") in caplog.text
    expected, count = reference_state(home, tmp_path)
    assert reopened.replayed == count and state_of(reopened) == expected
    size = log_path.stat().st_size
    assert all(offset < size for path in reopened.paths() for offset, _ in reopened._index.heads(path))
    reopened.close()


def test_a_batch_writes_only_the_rows_it_changes(tmp_path):
    home = tmp_path / "home"
    history = History.open(home, Q)
    for start in range(0, 3000, 500):
        for i in range(start, start + 500):
            history.make_local("create", "dir", f"d{i}", time=1.0, durable=False)
    history.close()
    history = History.open(home, Q)
    db = history._index._db
    before = db.total_changes
    history.make_local("create", "dir", "d0/new", time=1.0)    # one event: a batch of one
    history.merge([])
    changed = db.total_changes - before
    assert 1 <= changed <= 10, f"{changed} rows written for one event over 3,000 paths"
    history.close()


def test_a_start_and_differing_read_no_line_of_the_log(tmp_path, monkeypatch):
    home = tmp_path / "home"
    history = History.open(home, Q)
    for i in range(300):
        history.make_local("create", "dir", f"d{i}", time=1.0, durable=False)
    recorded = [(f"d{i}", f"{Q}:{i + 1}") for i in range(0, 300, 2)]    # every other path in sync
    history.close()
    reads = []
    real_line_at = EventLog.line_at
    monkeypatch.setattr(EventLog, "line_at", lambda self, offset: reads.append(offset) or real_line_at(self, offset))
    reopened = History.open(home, Q)
    found = sorted(reopened.differing(recorded))
    assert found == sorted(f"d{i}" for i in range(1, 300, 2))
    assert len(list(reopened.paths())) == 300
    assert reads == [], f"{len(reads)} log lines read"
    reopened.close()


def test_a_reader_beside_a_writer_uses_its_database_and_never_writes_one(tmp_path):
    home = tmp_path / "a home?#%20"      # (the reader opens the database by URI)
    writer = History.open(home, Q)
    writer.merge(scripted(40))
    writer.sync()
    reader = History.open(home, None, read_only=True)      # (p2p log, p2p restore beside a running node)
    assert reader.replayed == 0 and state_of(reader) == state_of(writer)
    reader.close()
    expected = state_of(writer)
    writer.close()
    db = home / ".p2p" / INDEX_NAME
    db.write_bytes(b"not a database")
    reader = History.open(home, None, read_only=True)      # unusable: indexed in memory
    assert reader.replayed == 40 and state_of(reader) == expected
    reader.close()
    assert db.read_bytes() == b"not a database"


class CountingDb:
    """A database connection that counts the lookups of one path's heads."""

    def __init__(self, db):
        self.db, self.lookups = db, 0

    def execute(self, sql, *args):
        self.lookups += "FROM heads WHERE path = ?" in sql
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_a_path_just_merged_is_looked_up_without_a_query_however_often(tmp_path):
    history = History.open(tmp_path / "home", Q)
    events = scripted(40)
    history.merge(events)
    history.sync()   # the heads are in the database now, not pending
    history._index._db = counting = CountingDb(history._index._db)
    paths = sorted({event["path"] if isinstance(event, dict) else event.path for event in events})
    for _ in range(6):   # the winner, the conflicts, still wanted, ... of a file being received
        for path in paths:
            history.current(path)
    assert counting.lookups == 0
    history.close()
    reopened = History.open(tmp_path / "home", Q)   # a fresh process: one query per path, then none
    reopened._index._db = counting = CountingDb(reopened._index._db)
    for _ in range(6):
        for path in paths:
            reopened.current(path)
    assert counting.lookups == len(paths)
    reopened.close()


def test_a_damaged_page_deep_in_the_database_is_found_at_open_and_rebuilt(tmp_path, caplog):
    home = tmp_path / "home"
    history = History.open(home, Q)
    for i in range(3000):
        history.make_local("create", "dir", f"dir-{i:05d}", time=1.0, durable=False)
    expected = state_of(history)
    history.close()
    db = home / ".p2p" / INDEX_NAME
    data = bytearray(db.read_bytes())
    middle = len(data) // 4096 // 2
    data[middle * 4096:(middle + 1) * 4096] = bytes(4096)   # a leaf lost; the first rows still read
    db.write_bytes(bytes(data))
    reopened = History.open(home, Q)
    assert "rebuilding it from events.jsonl" in caplog.text and reopened.replayed == 3000
    assert state_of(reopened) == expected
    reopened.close()


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "dir/c", "é"]), st.integers(0, 3), st.booleans()),
                max_size=60), st.data())
def test_fuzz_the_index_database_matches_a_dict_across_flushes_and_reopens(steps, data):
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(limits, "HEADS_CACHE", data.draw(st.integers(1, 3))):
        path = Path(tmp) / INDEX_NAME
        index, model, offsets = IndexDB.open(path), {}, {"A": array("q")}
        for number, (name, keep, flush) in enumerate(steps):
            heads = model.get(name, ())
            superseded = {offset for offset, _ in heads[keep:]}    # supersede all but the first ``keep``
            offsets["A"].append(number)
            index.add_head(name, number, f"A:{number + 1}", superseded)
            model[name] = tuple(h for h in heads if h[0] not in superseded) + ((number, f"A:{number + 1}"),)
            if flush:
                index.flush(offsets, {"end": number})
            if data.draw(st.booleans()):   # a batch's look-up: its rows serve the next add_head until a flush
                asked = data.draw(st.lists(st.sampled_from(["a", "b", "dir/c", "é", "never"]), unique=True))
                assert index.heads_many(asked) == {p: model.get(p, ()) for p in asked}
            read = data.draw(st.sampled_from(["a", "b", "dir/c", "é"]))   # fills (and evicts from) the cache
            assert sorted(index.heads(read)) == sorted(model.get(read, ()))
            if data.draw(st.booleans()) and not index.pending:   # reopen what was saved
                index.close()
                index = IndexDB.open(path)
                assert list(index.load_offsets().get("A", ())) == list(offsets["A"])
        assert {p: sorted(index.heads(p)) for p in model} == {p: sorted(h) for p, h in model.items()}
        assert {p: sorted(h) for p, h in index.groups()} == {p: sorted(h) for p, h in model.items()}
        recorded = data.draw(st.dictionaries(st.sampled_from(sorted(model) + ["never"]),
                                             st.sampled_from(["", "A:1", "A:2", "A:3"])))
        expected = {p for p, h in model.items() if not (len(h) == 1 and recorded.get(p) == h[0][1])}
        assert sorted(index.differing(recorded.items())) == sorted(expected)
        index.close()


def test_a_batch_of_local_events_is_indexed_in_one_transaction_at_its_sync(tmp_path, monkeypatch):
    home = tmp_path / "home"
    history = History.open(home, Q)
    flushes = []
    real_flush = history._index.flush
    monkeypatch.setattr(history._index, "flush", lambda *a, **k: flushes.append(1) or real_flush(*a, **k))
    events = [history.make_local("create", "dir", f"d{i}", time=1.0, durable=False) for i in range(200)]
    assert flushes == []                                   # not one transaction per event
    assert [e.id for e in history.heads("d7")] == [events[7].id]   # read before the save all the same
    history.sync()
    assert flushes == [1]
    history.close()
    reopened = History.open(home, Q)
    assert reopened.replayed == 0 and len(list(reopened.paths())) == 200
    reopened.close()


def test_a_batch_a_kill_interrupts_before_its_sync_is_replayed_from_the_log(tmp_path):
    home = tmp_path / "home"

    def work():
        history = History.open(home, Q)
        for i in range(50):
            history.make_local("create", "dir", f"d{i}", time=1.0, durable=False)
    in_child(work)
    reopened = History.open(home, Q)
    assert reopened.replayed == 50 and len(list(reopened.paths())) == 50
    reopened.close()
