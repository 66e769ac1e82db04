"""Event ids are never reused: the durable sequence mark, the home fingerprint,
and a new device id when a log lost our events, a home was copied, or a peer
holds more of our events than our log."""

import os
import signal
import subprocess

import pytest
import ujson

from p2p import limits
from p2p.history.event import Event
from p2p.history.history import History
from p2p.history.seqmark import MARK_NAME, SeqMark
from p2p.security.identity import Identity, home_copied, record_home

from peers import converged, wait_until

A = "A" * 32
B = "B" * 32


def dir_event(seq, origin):
    return Event(id=f"{origin}:{seq}", origin=origin, seq=seq, lamport=seq, type="create", kind="dir",
                 path=f"{origin[0]}{seq}", size=0, mode=0o755, mtime=seq, hash="", blocks=(), parents=(),
                 time=float(seq))


def mark_of(home):
    return ujson.loads((home / ".p2p" / MARK_NAME).read_bytes())


# --- the sequence mark ------------------------------------------------------------

def test_the_mark_is_reserved_in_ranges_before_the_events_and_exact_after_a_clean_close(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "SEQ_RESERVE", 10)
    history = History.open(tmp_path, A)
    assert mark_of(tmp_path) == {"device": A, "reserved": 0, "range": 10, "clean": True}
    writes = []
    real = SeqMark._write
    monkeypatch.setattr(SeqMark, "_write", lambda self, n, clean: (writes.append(n), real(self, n, clean)))
    for i in range(25):
        event = history.make_local("create", "dir", f"d{i}", time=1.0)
        assert mark_of(tmp_path)["reserved"] >= event.seq      # durable before the event exists
    assert writes == [10, 20, 30]                              # one fsync per range, not per event
    assert mark_of(tmp_path)["clean"] is False
    history.close()
    assert mark_of(tmp_path) == {"device": A, "reserved": 25, "range": 10, "clean": True}
    reopened = History.open(tmp_path, A)
    assert reopened.lost_own_events is None
    reopened.close()


def test_a_deleted_log_is_noticed_after_a_clean_stop_and_after_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "SEQ_RESERVE", 10)
    history = History.open(tmp_path, A)
    for i in range(3):
        history.make_local("create", "dir", f"d{i}", time=1.0)
    history.close()                                   # clean: exactly 3
    (tmp_path / "events.jsonl").rename(tmp_path / "kept.jsonl")
    lost = History.open(tmp_path, A)
    assert "holds 0 events of this device id but it issued at least 3" in lost.lost_own_events
    with pytest.raises(PermissionError):
        lost.make_local("create", "dir", "x", time=1.0)   # never reuses A:1
    lost.change_device_id(B)                              # what the node does: a new id
    assert lost.make_local("create", "dir", "x", time=1.0).id == f"{B}:1"
    lost.close()

    crashed = tmp_path / "crashed"
    history = History.open(crashed, A)
    for i in range(13):                                   # reserved up to 20 when A:11 was made
        history.make_local("create", "dir", f"d{i}", time=1.0)
    history._log.close()                                  # a crash: no clean mark
    data = (crashed / "events.jsonl").read_bytes().splitlines(keepends=True)
    (crashed / "events.jsonl").write_bytes(b"".join(data[:11]))   # 11 of 13: cannot be told from a crash
    # (the index database is now ahead of the log: detected and rebuilt)
    reopened = History.open(crashed, A)
    assert reopened.lost_own_events is None
    reopened._log.close()
    (crashed / "events.jsonl").write_bytes(b"".join(data[:10]))   # 10: A:11 was issued, so it is lost
    assert "issued at least 11" in History.open(crashed, A).lost_own_events


def test_a_home_without_a_mark_starts_one_and_a_corrupt_mark_is_ignored(tmp_path, caplog):
    history = History.open(tmp_path, A)
    history.make_local("create", "dir", "d", time=1.0)
    history.close()
    (tmp_path / ".p2p" / MARK_NAME).unlink()             # a home from before the mark
    history = History.open(tmp_path, A)
    assert history.lost_own_events is None and mark_of(tmp_path)["reserved"] == 1
    history.close()
    (tmp_path / ".p2p" / MARK_NAME).write_bytes(b"{not json")
    history = History.open(tmp_path, A)
    assert history.lost_own_events is None and "seq.mark ignored" in caplog.text
    history.close()


def test_a_peer_offering_our_own_unknown_event_is_refused_and_noted(tmp_path):
    history = History.open(tmp_path, A)
    history.make_local("create", "dir", "mine", time=1.0)
    accepted, rejected = history.merge([dir_event(1, A).to_dict(), dir_event(2, A).to_dict(), dir_event(1, B).to_dict()])
    assert [e.id for e in accepted] == [f"{B}:1"]
    assert [reason for _, reason in rejected] == ["an event of our own device id that our history lacks"]
    assert history.own_offered == 2 and history.own_count == 1
    history.close()


def test_a_corrupt_line_holding_one_of_our_events_counts_as_lost(tmp_path):
    history = History.open(tmp_path, A)
    for i in range(3):
        history.make_local("create", "dir", f"d{i}", time=1.0)
    history.close()
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "events.jsonl").write_bytes(lines[0] + b"garbage\n" + lines[2])
    assert "lacks event 2 of this device id" in History.open(tmp_path, A).lost_own_events


# --- the home fingerprint and a new identity ----------------------------------------

def test_a_copied_home_is_told_from_a_moved_one(tmp_path):
    home = tmp_path / "home"
    identity = Identity.load_or_create(home)
    assert home_copied(home, identity.device_id) is None        # no record yet: not a copy
    record_home(home, identity.device_id)
    assert home_copied(home, identity.device_id) is None
    moved = tmp_path / "moved"
    home.rename(moved)                                         # mv on one file system: the same home
    assert home_copied(moved, identity.device_id) is None
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(moved), str(copy)], check=True)
    assert "this home was copied from another place (inode of .p2p changed)" == home_copied(copy, identity.device_id)
    assert home_copied(copy, "C" * 32) is None                  # recorded for another id: the key was replaced
    record = ujson.loads((copy / ".p2p" / "home.fingerprint").read_bytes())
    record["machine"] = "another-machine"
    (moved / ".p2p" / "home.fingerprint").write_bytes(ujson.dumps(record).encode())
    assert "from another machine" in home_copied(moved, identity.device_id)


def test_replacing_the_identity_keeps_the_old_key_aside(tmp_path):
    old = Identity.load_or_create(tmp_path)
    new = Identity.replace(tmp_path)
    assert new.device_id != old.device_id
    assert Identity.load_or_create(tmp_path).device_id == new.device_id
    aside = tmp_path / ".p2p" / f"identity.key.retired-{old.device_id}"
    assert aside.stat().st_mode & 0o077 == 0
    assert Identity._load(aside).device_id == old.device_id


# --- real peers -----------------------------------------------------------------

def ids_agree(*peers):
    """Every event id names one event in every log; returns {id: line}."""
    seen = {}
    for peer in peers:
        ids = []
        for line in (peer.home / "events.jsonl").read_bytes().splitlines():
            event = Event.from_json(line)
            ids.append(event.id)
            assert seen.setdefault(event.id, line) == line, f"{event.id} names two different events"
        assert len(ids) == len(set(ids)), f"an id twice in {peer.name}'s log"
    return seen


def in_sync(*peers):
    try:
        return converged(*peers)
    except FileNotFoundError:   # a file being placed (its temporary renamed) while read
        return False


def state_files(peer):
    """The local state: .p2p/local.db and its WAL, name -> bytes."""
    return {p.name: p.read_bytes() for p in (peer.home / ".p2p").glob("local.*")}


def state_names(peer, path):
    return any(path.encode() in data for data in state_files(peer).values())


def device_id(peer):
    return Identity.load_or_create(peer.home).device_id


def test_a_peer_whose_log_was_deleted_takes_a_new_device_id(make_peer):
    b = make_peer("b").start()
    a = make_peer("a", peers=[b]).start()
    a.write("one.txt", b"first")
    a.write("two.txt", b"second")
    wait_until(lambda: in_sync(a, b) and b.has("two.txt", b"second"), 20, "the first sync")
    old_id = device_id(a)
    assert a.stop() == 0 and b.stop() == 0
    (a.home / "events.jsonl").unlink()                          # the folder stays
    a.write("three.txt", b"made after the log was lost")       # recorded before a meets b again
    a.start()
    b.start()
    wait_until(lambda: b.has("three.txt", b"made after the log was lost"), 30, "the new change on b")
    a.write("one.txt", b"first, edited")
    wait_until(lambda: b.has("one.txt", b"first, edited"), 20, "an edit of a file the old id made")
    wait_until(lambda: in_sync(a, b), 20, "convergence")
    new_id = device_id(a)
    assert new_id != old_id and "NEW DEVICE ID: " in a.output() and "deleted or replaced" in a.output()
    assert (a.home / ".p2p" / f"identity.key.retired-{old_id}").exists()
    wait_until(lambda: set(ids_agree(a)) == set(ids_agree(b)), 20, "the same events on both")
    ids_agree(a, b)
    assert not any(".sync-conflict-" in name for name in os.listdir(a.root) + os.listdir(b.root))


def test_two_copies_of_one_home_never_issue_the_same_id(make_peer, tmp_path):
    c = make_peer("c").start()
    a = make_peer("a", peers=[c]).start()
    a.write("shared.txt", b"before the copy")
    wait_until(lambda: c.has("shared.txt", b"before the copy"), 20, "the first sync")
    assert a.stop() == 0
    subprocess.run(["cp", "-a", str(a.home), str(tmp_path / "a2")], check=True)
    a2 = make_peer("a2", peers=[c])
    a.start()
    a2.start()
    assert device_id(a2) != device_id(a) and "this home was copied" in a2.output()
    assert "NEW DEVICE ID" not in a.output()                     # the original keeps its id
    a.write("from-a.txt", b"made on the original")
    a2.write("from-a2.txt", b"made on the copy")
    a2.write("shared.txt", b"edited on the copy")
    wait_until(lambda: in_sync(a, a2, c) and c.has("from-a.txt", b"made on the original")
               and c.has("from-a2.txt", b"made on the copy") and c.has("shared.txt", b"edited on the copy"),
               30, "all three to converge")
    wait_until(lambda: set(ids_agree(a)) == set(ids_agree(a2)) == set(ids_agree(c)), 20, "the same events")
    ids_agree(a, a2, c)
    assert not any(".sync-conflict-" in name for name in os.listdir(c.root))


def test_a_log_older_than_the_local_state_takes_a_new_id_at_start(make_peer):
    """A crash, then a log replaced by a slightly older copy (within the reserved range):
    the local state, saved only once its events were durable, names events the log lacks."""
    b = make_peer("b").start()
    a = make_peer("a", peers=[b]).start()
    a.write("one.txt", b"1")
    wait_until(lambda: b.has("one.txt", b"1"), 20, "one.txt on b")
    older = (a.home / "events.jsonl").read_bytes()
    a.write("two.txt", b"2")
    a.write("three.txt", b"3")
    wait_until(lambda: b.has("two.txt", b"2") and b.has("three.txt", b"3"), 20, "the later files on b")
    old_id = device_id(a)
    wait_until(lambda: state_names(a, "three.txt"), 20, "the local state")
    a.stop(signal.SIGKILL)
    (a.home / "events.jsonl").write_bytes(older)   # 1 of our 3 events
    a.start()
    assert "NEW DEVICE ID" in a.output() and "the local state names event" in a.output()
    assert a.has("two.txt", b"2") and a.has("three.txt", b"3")   # never taken for files to remove
    a.write("four.txt", b"4")
    wait_until(lambda: b.has("four.txt", b"4"), 20, "a's next change on b, under its new id")
    wait_until(lambda: in_sync(a, b), 20, "convergence")
    seen = ids_agree(a, b)
    assert f"{device_id(a)}:1" in seen and device_id(a) != old_id
    assert not any(".sync-conflict-" in name for name in os.listdir(a.root) + os.listdir(b.root))


def test_a_peer_holding_more_of_our_events_than_our_log_makes_us_take_a_new_id(make_peer):
    """What the start cannot see: log and local state both restored from an older copy."""
    b = make_peer("b").start()
    a = make_peer("a", peers=[b]).start()
    a.write("one.txt", b"1")
    wait_until(lambda: b.has("one.txt", b"1"), 20, "one.txt on b")
    wait_until(lambda: state_names(a, "one.txt"), 20, "the local state")
    older_log, older_state = (a.home / "events.jsonl").read_bytes(), state_files(a)
    a.write("two.txt", b"2")
    wait_until(lambda: b.has("two.txt", b"2"), 20, "two.txt on b")
    os.remove(a.path("two.txt"))
    wait_until(lambda: b.lacks("two.txt"), 20, "the delete on b")
    old_id = device_id(a)
    a.stop(signal.SIGKILL)
    (a.home / "events.jsonl").write_bytes(older_log)   # the folder matches them again: nothing to record
    for path in (a.home / ".p2p").glob("local.*"):
        path.unlink()
    for name, data in older_state.items():
        (a.home / ".p2p" / name).write_bytes(data)
    a.start()
    wait_until(lambda: "NEW DEVICE ID" in a.output(), 20, "a to notice b holds more of its events")
    assert "holds 3 events of this device id, our log 1" in a.output()   # on connect, not at start
    assert device_id(a) != old_id
    a.write("four.txt", b"4")
    wait_until(lambda: b.has("four.txt", b"4"), 20, "a's next change on b, under its new id")
    wait_until(lambda: in_sync(a, b), 20, "convergence")
    seen = ids_agree(a, b)
    assert f"{device_id(a)}:1" in seen and f"{old_id}:3" in seen and f"{old_id}:4" not in seen
