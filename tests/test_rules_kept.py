"""Rules that once passed their own removal, each driven through the real
code (issue 15, item 6; none through tests/simnet.py):

* before authentication a frame is capped at HANDSHAKE_MAX_FRAME (4 KiB);
* a local event is durable (fsynced) before any peer is sent it;
* the local-edit check before a remote version is renamed into place;
* an ignored path is never written by a remote version;
* the scanner never follows a symbolic link;
* the index database is not used when the log's last line changed;
* two peers that dial each other keep one channel (the duplicate-channel rule);
* the Summary is sent again while events wait for missing predecessors;
* a block asked for with another size than its own is not served.

Real `p2p run` processes on loopback (tests/peers.py) and rogue members
(tests/rogue.py), except for the two rules of pure layers, unit-tested on
the real FolderWriter and History.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
from pathlib import Path

import pytest
import ujson

from p2p import limits
from p2p.blocks.store import BlockStore
from p2p.folder.apply import FolderWriter, LocalChanged
from p2p.folder.scan import Scanner
from p2p.folder.state import LocalState
from p2p.history.event import Event
from p2p.history.history import INDEX_NAME, History
from p2p.wire.messages import BlockData, BlockRequest, MsgType, Summary

from peers import Peer, wait_until
from rogue import AuthenticatedRogue, dir_event, exchange, file_event

SECRET = "rules-kept-test-secret-0123456789"
WAIT = 60.0
DURABLE_PEER = str(Path(__file__).resolve().parent / "durable_peer.py")


def start_target(tmp_path, name="T", **kwargs) -> Peer:
    return Peer(tmp_path, name, secret=SECRET, **kwargs).start()


def event_paths(peer: Peer) -> set:
    lines = (peer.home / "events.jsonl").read_bytes().splitlines()
    return {ujson.loads(line)["path"] for line in lines if line.strip()}


# --- the 4 KiB cap before authentication -------------------------------------------

@pytest.mark.slow
def test_a_frame_just_over_the_handshake_cap_is_refused_at_once(tmp_path):
    t = start_target(tmp_path)
    try:
        header = struct.pack(">IBB", limits.HANDSHAKE_MAX_FRAME + 1, MsgType.HANDSHAKE_HELLO, 0)
        port, received, closed = exchange((t.host, t.port), header + b"\0" * 64)   # under MAX_FRAME: only the
        assert closed and received == b"", "T waited for the rest of a 4 KiB + 1 frame"   # cap refuses it
        wait_until(lambda: f"handshake with 127.0.0.1:{port} failed: FrameTooLarge" in t.output(), WAIT, "the log")
    finally:
        t.stop()


# --- local events are durable before they are sent -----------------------------------

@pytest.mark.slow
def test_every_local_event_is_durable_before_a_peer_is_sent_it(make_peer):
    a = make_peer("A", program=[DURABLE_PEER]).start()
    b = make_peer("B", peers=[a]).start()
    for i in range(30):   # one batch each: 30 chances for an event to leave before its fsync
        a.write(f"f{i}.txt", b"%d" % i)
        wait_until(lambda: b.has(f"f{i}.txt", b"%d" % i), WAIT, f"f{i}.txt on B")
    sent = a.output()
    assert sent.count("SENT OWN EVENT") >= 30, "the audit saw no sends"
    assert "NOT DURABLE WHEN SENT" not in sent


# --- the local-edit check before a rename ----------------------------------------------

def test_a_local_edit_made_while_a_remote_version_arrives_is_never_overwritten(tmp_path):
    root, home = tmp_path / "shared", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    state = LocalState(home / "local.db")
    store = BlockStore(home / "blocks")
    (root / "notes.txt").write_bytes(b"the version both peers had")
    scanned = Scanner(root, state, store).observe("notes.txt")
    state.set("notes.txt", scanned.entry(""))
    remote = b"a peer's newer version"
    digest = hashlib.sha256(remote).hexdigest()
    store.put(digest, remote)
    event = Event.from_dict(file_event("R" * 32, 1, "notes.txt", remote))
    pending = FolderWriter(root, state, store, case_folding=False).begin_file("notes.txt", event)
    pending.copy_from_store(pending.layout())
    (root / "notes.txt").write_bytes(b"the user's edit, made just now")   # not scanned yet
    with pytest.raises(LocalChanged):
        pending.commit()
    assert (root / "notes.txt").read_bytes() == b"the user's edit, made just now"
    assert os.listdir(root) == ["notes.txt"], "the temporary file was left behind"
    state.close()


# --- ignored paths ----------------------------------------------------------------------

@pytest.mark.slow
def test_an_ignored_path_is_never_written_by_a_remote_version(tmp_path):
    t = Peer(tmp_path, "T", secret=SECRET)
    t.write(".p2pignore", b"cache/\n")
    t.write("cache/keep.txt", b"T's own, ignored")
    t.start()
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    try:
        me = rogue.device_id
        for content in (b"over keep", b"a new ignored file", b"visible", b"later"):
            rogue.serve(content)
        rogue.send_events([file_event(me, 1, "cache/keep.txt", b"over keep"),
                           file_event(me, 2, "cache/new.txt", b"a new ignored file"),
                           dir_event(me, 3, "cache/made-by-peer"),
                           file_event(me, 4, "visible.txt", b"visible")])
        wait_until(lambda: t.has("visible.txt", b"visible"), WAIT, "the event that is not ignored")
        rogue.send_events([file_event(me, 5, "later.txt", b"later")])   # the first batch's jobs are done
        wait_until(lambda: t.has("later.txt", b"later"), WAIT, "a later event")
        assert t.has("cache/keep.txt", b"T's own, ignored")
        assert t.lacks("cache/new.txt") and t.lacks("cache/made-by-peer")
        assert hashlib.sha256(b"a new ignored file").digest() not in {r.hash for r in rogue.block_requests}
    finally:
        rogue.close()
        t.stop()


# --- the scanner and symbolic links -----------------------------------------------------

@pytest.mark.slow
def test_the_scanner_never_follows_a_symbolic_link(tmp_path, make_peer):
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"not for the folder")
    (outside / "inner" / "deep.txt").write_bytes(b"nor this")
    a = make_peer("A")
    (a.root / "dir-link").symlink_to(outside, target_is_directory=True)
    (a.root / "file-link").symlink_to(outside / "secret.txt")
    a.write("plain.txt", b"plain")
    a.start()
    b = make_peer("B", peers=[a]).start()
    wait_until(lambda: b.has("plain.txt", b"plain"), WAIT, "plain.txt on B")
    (a.root / "late-link").symlink_to(outside / "secret.txt")   # seen by the watcher, not the start-up scan
    (a.root / "late-dir-link").symlink_to(outside / "inner", target_is_directory=True)
    a.write("after.txt", b"after")
    wait_until(lambda: b.has("after.txt", b"after"), WAIT, "after.txt on B")
    assert set(b.tree()) == {"plain.txt", "after.txt"}
    assert event_paths(a) == {"plain.txt", "after.txt"}


def test_the_start_up_walk_never_enters_a_symbolic_link_and_records_none(tmp_path):
    root, outside = tmp_path / "shared", tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"not for the folder")
    (root / "real-dir").mkdir(parents=True)
    (root / "real-dir" / "dir-link").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "secret.txt")
    (root / "plain.txt").write_bytes(b"plain")
    scanner = Scanner(root, LocalState(tmp_path / "local.db"), BlockStore(tmp_path / "blocks"))
    walked = list(scanner.walk())
    assert not [p for p in walked if p.startswith("real-dir/dir-link")], "the walk entered or listed a link"
    assert {c.path for c in map(scanner.observe, walked) if c is not None} == {"real-dir", "plain.txt"}
    assert scanner.observe("file-link") is None and scanner.observe("real-dir/dir-link") is None


# --- the index database and the log's last line -----------------------------------------------

def test_the_index_is_not_used_when_the_logs_last_line_changed(tmp_path, caplog):
    home = tmp_path / "home"
    history = History.open(home, "Q" * 32)
    for path in ("aaaa", "bbbb"):
        history.make_local("create", "dir", path, mode=0o755, time=1.0)
    history.close()
    assert (home / ".p2p" / INDEX_NAME).exists()
    log_path = home / "events.jsonl"
    data = log_path.read_bytes()
    assert data.count(b'"path":"bbbb"') == 1
    log_path.write_bytes(data.replace(b'"path":"bbbb"', b'"path":"cccc"'))   # same size, same last line start
    reopened = History.open(home, "Q" * 32)
    assert reopened.current("cccc") is not None and reopened.current("bbbb") is None
    assert "rebuilding it from events.jsonl" in caplog.text
    reopened.close()


# --- one channel per pair --------------------------------------------------------------------

def established_between(*ports: int) -> int:
    """ESTABLISHED TCP connections with an end on one of ``ports`` and the other
    end on another (each one appears twice in /proc/net/tcp: once per end)."""
    ends = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, status = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16), fields[3]
            if status == "01" and (local in ports or remote in ports):
                ends += 1
    return ends // 2


@pytest.mark.slow
def test_two_peers_that_dial_each_other_keep_one_channel(make_peer):
    a = make_peer("A")
    b = make_peer("B", peers=[a])
    a.peers = [b]
    b.start()                # its dials to A fail and are retried (backoff) ...
    a.start()                # ... while A dials B: two channels, one from each initiator
    # both dialers get through; the one whose channel lost then waits while the peer is connected
    wait_until(lambda: f"not dialling {a.address} now" in b.output() or f"not dialling {b.address} now" in a.output(),
               WAIT, "the second channel to meet the first")
    wait_until(lambda: established_between(a.port, b.port) == 1, WAIT, "one channel left between A and B")
    a.write("x.txt", b"x")
    b.write("y.txt", b"y")
    wait_until(lambda: b.has("x.txt", b"x") and a.has("y.txt", b"y"), WAIT, "both files across")
    assert established_between(a.port, b.port) == 1


# --- the Summary sent again while events wait -----------------------------------------------

@pytest.mark.slow
def test_a_summary_is_sent_again_while_events_wait_for_their_predecessors(tmp_path):
    t = start_target(tmp_path)
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    try:
        wait_until(lambda: rogue.received_of(Summary), WAIT, "T's first Summary")
        rogue.send_events([dir_event(rogue.device_id, 2, "second")])   # its predecessor, seq 1, never sent
        wait_until(lambda: len(rogue.received_of(Summary)) >= 2, 10.0, "T to ask again for what it lacks")
        assert rogue.received_of(Summary)[-1].vv.get(rogue.device_id, 0) == 0
        rogue.send_events([dir_event(rogue.device_id, 1, "first")])
        wait_until(lambda: (t.root / "first").is_dir() and (t.root / "second").is_dir(), WAIT, "both applied")
    finally:
        rogue.close()
        t.stop()


# --- a block asked for with another size -----------------------------------------------------

@pytest.mark.slow
def test_a_block_asked_for_with_another_size_than_its_own_is_not_served(tmp_path):
    data = b"a block T has in its store\n" * 100
    t = Peer(tmp_path, "T", secret=SECRET)
    t.write("served.txt", data)
    t.start()
    rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
    try:
        digest = hashlib.sha256(data).digest()
        for req_id, size in ((1, len(data) - 1), (2, len(data) + 1), (3, len(data))):
            rogue.send(BlockRequest(req_id=req_id, size=size, hash=digest))
        wait_until(lambda: len(rogue.received_of(BlockData)) == 3, WAIT, "three answers")
        answers = {m.req_id: m for m in rogue.received_of(BlockData)}
        assert answers[1].status == answers[2].status == 1 and answers[1].data == answers[2].data == b""
        assert answers[3].status == 0 and answers[3].data == data
        assert not rogue.closed.is_set()
    finally:
        rogue.close()
        t.stop()
