"""EventLog: append, iterate, torn-tail recovery at every offset, corrupt lines, the writer lock."""

import os

import pytest

from p2p.history.event import Event
from p2p.history.log import EventLog, LogLocked

A = "A" * 32


def make_event(seq, path="a.txt"):
    return Event(id=f"{A}:{seq}", origin=A, seq=seq, lamport=seq, type="create" if seq == 1 else "update",
                 kind="dir", path=f"d{seq}/{path}", size=0, mode=0o755, mtime=seq, hash="", blocks=(),
                 parents=(f"{A}:{seq - 1}",) if seq > 1 else (), time=float(seq))


def write_events(path, count):
    log = EventLog(path)
    offsets = log.append([make_event(i) for i in range(1, count + 1)], durable=True)
    log.close()
    return offsets


def test_append_returns_offsets_and_iterates(tmp_path):
    path = tmp_path / "events.jsonl"
    offsets = write_events(path, 5)
    log = EventLog(path)
    assert [(o, e.seq) for o, e in log.iter_from()] == list(zip(offsets, range(1, 6)))
    assert [e.seq for _, e in log.iter_from(offsets[3])] == [4, 5]
    assert [(o, e.seq) for o, e in log.iter_reverse()] == list(zip(reversed(offsets), range(5, 0, -1)))
    assert log.read_at(offsets[2]) == make_event(3)
    more = log.append([make_event(6)])
    assert more == [path.stat().st_size - len(make_event(6).to_json()) - 1]
    assert path.read_bytes().endswith(b"\n") and path.read_bytes().count(b"\n") == 6
    log.close()


def test_reverse_iteration_across_chunk_boundaries(tmp_path, monkeypatch):
    import p2p.history.log as log_module
    monkeypatch.setattr(log_module, "READ_CHUNK", 37)  # lines straddle every chunk edge
    path = tmp_path / "events.jsonl"
    offsets = write_events(path, 20)
    log = EventLog(path)
    assert [(o, e.seq) for o, e in log.iter_reverse()] == list(zip(reversed(offsets), range(20, 0, -1)))
    assert [(o, e.seq) for o, e in log.iter_from()] == list(zip(offsets, range(1, 21)))
    log.close()


def test_torn_tail_at_every_offset_of_the_last_line(tmp_path):
    original = tmp_path / "original.jsonl"
    offsets = write_events(original, 4)
    data = original.read_bytes()
    last_start = offsets[-1]
    for cut in range(last_start, len(data)):
        work = tmp_path / f"cut{cut}"
        work.mkdir()
        path = work / "events.jsonl"
        path.write_bytes(data[:cut])
        log = EventLog(path)
        assert [e.seq for _, e in log.iter_from()] == [1, 2, 3]
        assert path.read_bytes() == data[:last_start]
        torn = list(work.glob("events.jsonl.torn-*"))
        if cut == last_start:
            assert torn == []
        else:
            assert len(torn) == 1 and torn[0].read_bytes() == data[last_start:cut]
        log.append([make_event(4)], durable=True)
        log.close()
        assert path.read_bytes() == data
        reopened = EventLog(path)
        assert [e.seq for _, e in reopened.iter_from()] == [1, 2, 3, 4]
        reopened.close()


def test_unparsable_complete_last_line_is_moved_aside(tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(path, 2)
    good = path.read_bytes()
    path.write_bytes(good + b'{"garbage": tru\n')
    log = EventLog(path)
    assert [e.seq for _, e in log.iter_from()] == [1, 2] and path.read_bytes() == good
    assert [p.read_bytes() for p in tmp_path.glob("events.jsonl.torn-*")] == [b'{"garbage": tru\n']
    log.close()


def test_zero_filled_tail_after_power_loss(tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(path, 2)
    good = path.read_bytes()
    path.write_bytes(good + b"\x00" * 4096)
    log = EventLog(path)
    assert path.read_bytes() == good and log.size == len(good)
    log.close()


def test_corrupt_middle_line_is_skipped_with_warning(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    offsets = write_events(path, 3)
    data = bytearray(path.read_bytes())
    data[offsets[1] + 2] = ord("#")
    path.write_bytes(bytes(data))
    log = EventLog(path)
    assert [e.seq for _, e in log.iter_from()] == [1, 3]
    assert [e.seq for _, e in log.iter_reverse()] == [3, 1]
    assert "corrupt line" in caplog.text
    assert path.read_bytes() == bytes(data)  # never rewritten
    log.close()


def test_single_writer_lock(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    with pytest.raises(LogLocked):
        EventLog(path)
    reader = EventLog(path, read_only=True)  # readers need no lock
    reader.close()
    log.close()
    EventLog(path).close()


def test_read_only_ignores_a_partial_last_line_and_repairs_nothing(tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(path, 2)
    with open(path, "ab") as out:
        out.write(b'{"half a line')
    before = path.read_bytes()
    reader = EventLog(path, read_only=True)
    assert [e.seq for _, e in reader.iter_from()] == [1, 2]
    assert [e.seq for _, e in reader.iter_reverse()] == [2, 1]
    with pytest.raises(PermissionError):
        reader.append([make_event(3)])
    reader.close()
    assert path.read_bytes() == before and not list(tmp_path.glob("*.torn-*"))


def test_read_only_missing_file(tmp_path):
    reader = EventLog(tmp_path / "events.jsonl", read_only=True)
    assert list(reader.iter_from()) == [] and list(reader.iter_reverse()) == []
    reader.close()


def test_sync_only_when_dirty(tmp_path, monkeypatch):
    calls = []
    log = EventLog(tmp_path / "events.jsonl")
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(fd))
    log.sync()
    log.append([make_event(1)])
    assert calls == []
    log.sync()
    log.sync()
    log.append([make_event(2)], durable=True)
    assert len(calls) == 2
    monkeypatch.undo()
    log.close()
