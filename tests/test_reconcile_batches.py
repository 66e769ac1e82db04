"""The reconciler's pass over many dirty paths: winners read a bounded chunk
at a time (200,000 dirty paths at start must not hold 200,000 events), every
path with content written before any removal, removals deepest first, a
chunk's directories made together before its files (one hand-off to the
pool and one local-state transaction, not one each), and a path to look at
again later waits in one heap, not in a timer each."""

import os
import stat
import time
import types

import gevent
import pytest
from gevent.event import Event as Event_

from p2p import limits
from p2p.blocks.store import BlockStore
from p2p.folder.apply import FolderWriter
from p2p.folder.state import Entry, LocalState
from p2p.folder.unsynced import Unsynced
from p2p.history.event import Event
from p2p.net.reconciler import Reconciler
from rogue import dir_event, file_event


def _reconciler(monkeypatch, versions: dict):
    """A reconciler over ``versions`` (path -> "file" | "delete" | None) that
    records, instead of writing, the order it reconciles paths in, and the
    size of each read of winners."""
    history = types.SimpleNamespace(current=lambda path: None if versions[path] is None
                                    else types.SimpleNamespace(type=versions[path], kind="file",
                                                               is_delete=versions[path] == "delete"))
    scanned = Event_()
    scanned.set()
    reconciler = Reconciler(
        root=None, history=history, state=types.SimpleNamespace(get_many=lambda paths: {}), store=None,
        archive=None, writer=None, unsynced=None, fetcher=None, rescan=None, pools=(None, None), gates=(scanned,),
        ignored=lambda path: False, quiet=None,
        label=None, spawn=gevent.spawn)
    done, reads = [], []
    monkeypatch.setattr(reconciler, "_reconcile", lambda path, target: done.append(path))
    targets = reconciler._targets

    def counted(paths):
        reads.append(len(paths))
        return targets(paths)
    monkeypatch.setattr(reconciler, "_targets", counted)
    return reconciler, done, reads


def _wait(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        gevent.sleep(0.01)


@pytest.fixture
def loop():
    greenlets = []
    yield lambda reconciler: greenlets.append(gevent.spawn(reconciler.run))
    gevent.killall(greenlets)


def test_winners_are_read_a_chunk_at_a_time_content_first_removals_deepest_first(monkeypatch, loop):
    monkeypatch.setattr(limits, "RECONCILE_CHUNK", 3)
    versions = {f"keep/{i:02d}": "file" for i in range(7)}
    versions.update({"old": "delete", "old/sub": "delete", "old/sub/f": None, "zz/gone": "delete"})
    reconciler, done, reads = _reconciler(monkeypatch, versions)
    loop(reconciler)
    reconciler.mark_dirty(list(versions))
    _wait(lambda: len(done) == len(versions))
    assert max(reads) <= 3
    assert done[:7] == sorted(p for p, v in versions.items() if v == "file")
    removed = done[7:]
    assert removed.index("old/sub/f") < removed.index("old/sub") < removed.index("old")


def test_a_path_looked_at_again_later_is_reconciled_then_and_not_before(monkeypatch, loop):
    reconciler, done, _ = _reconciler(monkeypatch, {"a": "file", "b": "file"})
    loop(reconciler)
    asked = time.time()
    reconciler.look_again_at(asked + 0.3, "a")
    reconciler.look_again_at(asked + 0.05, "b")
    _wait(lambda: done == ["b"])
    assert time.time() - asked < 0.3
    _wait(lambda: done == ["b", "a"])
    assert time.time() - asked >= 0.3
    assert not reconciler._later


def test_a_chunks_directories_are_made_together_before_its_files(tmp_path, loop):
    root, home = tmp_path / "shared", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    state = LocalState(home / "local.db")
    writer = FolderWriter(root, state, BlockStore(home / "blocks"), case_folding=False)
    dirs = ["a", "a/b", "a/b/c", "d", "x/y"]   # x is a file on disk, replaced by a directory in this chunk
    events = {path: dir_event("R" * 32, n + 1, path) for n, path in enumerate(dirs + ["x"])}
    events.update({path: file_event("R" * 32, 100 + n, path, b"content")
                   for n, path in enumerate(["a/f.txt", "a/b/c/g.txt", "d/h.txt"])})
    events = {path: Event.from_dict(event) for path, event in events.items()}
    for path, event in events.items():
        if event.kind == "dir":
            events[path] = Event.from_dict({**event.to_dict(), "mode": 0o750})
    (root / "x").write_bytes(b"ours")
    state.set("x", Entry.from_stat(os.lstat(root / "x"), "somehash", "R" * 32 + ":999"))
    wanted = []
    fetcher = types.SimpleNamespace(want=lambda path, event: wanted.append(
        (path, all((root / p).is_dir() for p in dirs if p != "x/y"))))
    history = types.SimpleNamespace(current=events.get, heads=lambda path: (events[path],) if path in events else (),
                                    get=lambda event_id: None, device_id="Q" * 32)
    pool = gevent.get_hub().threadpool
    handoffs = []
    counting = types.SimpleNamespace(apply=lambda fn, args=(), kwargs=None: (
        handoffs.append(getattr(fn, "__name__", fn)), pool.apply(fn, args, kwargs))[1])
    transactions = []
    state._db.set_trace_callback(lambda sql: transactions.append(sql) if sql == "COMMIT" else None)
    scanned = Event_()
    reconciler = Reconciler(
        root=root, history=history, state=state, store=types.SimpleNamespace(missing=lambda blocks: []),
        archive=(), writer=writer, unsynced=Unsynced(), fetcher=fetcher, rescan=lambda paths: None,
        pools=(counting, None), gates=(scanned,), ignored=lambda path: False, quiet=None,
        label=lambda device: device, spawn=gevent.spawn)
    scanned.set()
    loop(reconciler)
    reconciler.mark_dirty(list(events))
    _wait(lambda: len(wanted) == 3 and all(getattr(state.get(p), "event_id", "") == events[p].id
                                           for p in dirs + ["x"]))
    for path in dirs + ["x"]:
        assert stat.S_IMODE(os.lstat(root / path).st_mode) == 0o750, path
        assert state.get(path).event_id == events[path].id
    assert sorted(path for path, _ in wanted) == ["a/b/c/g.txt", "a/f.txt", "d/h.txt"]
    assert all(made for _, made in wanted), "a file was fetched before its chunk's directories were made"
    # the chunk's directories together; then the file x removed, x/y made alone after it (its parent
    # with it), and x's own version in the next pass
    assert handoffs == ["make_dirs", "_outcome", "_outcome", "make_dirs"]
    assert len(transactions) <= 5   # the same, and x made as x/y's parent


def test_a_users_file_recorded_while_a_received_version_is_committed_stays(tmp_path):
    """commit_remote_file found the remote version still wanted; then, before
    its rename, the user wrote the file and the local loop recorded it (the
    disk agrees with that new record): the user's file stays, and the path
    is scanned again (its new event decides), not overwritten by the older
    remote version."""
    root, home = tmp_path / "shared", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    state = LocalState(home / "local.db")
    writer = FolderWriter(root, state, BlockStore(home / "blocks"), case_folding=False)
    target = root / "f.txt"
    target.write_bytes(b"ours, before")
    state.set("f.txt", Entry.from_stat(os.lstat(target), "oldhash", "R" * 32 + ":1"))
    event = Event.from_dict(file_event("R" * 32, 2, "f.txt", b"the remote version"))
    history = types.SimpleNamespace(current=lambda path: event, heads=lambda path: (event,), get=lambda event_id: None,
                                    sync=lambda: None, device_id="Q" * 32)
    pool = gevent.get_hub().threadpool
    rescanned = []
    scanned = Event_()
    scanned.set()
    reconciler = Reconciler(
        root=root, history=history, state=state, store=types.SimpleNamespace(missing=lambda blocks: []),
        archive=(), writer=writer, unsynced=Unsynced(), fetcher=types.SimpleNamespace(jobs={}),
        rescan=rescanned.extend, pools=(pool, pool), gates=(scanned,), ignored=lambda path: False, quiet=None,
        label=lambda device: device, spawn=gevent.spawn)
    committing = gevent.spawn(reconciler.small_commits.run)
    pending = writer.begin_file("f.txt", event)
    pending.write_block([0], b"the remote version")
    commit = reconciler.small_commits.commit

    def the_user_writes_first(p):   # between still_wanted and the rename: the local loop records the user's file
        target.write_bytes(b"the user's new file")
        state.set("f.txt", Entry.from_stat(os.lstat(target), "userhash", "U" * 32 + ":1"))
        return commit(p)
    reconciler.small_commits.commit = the_user_writes_first
    try:
        reconciler.commit_remote_file(pending)
    finally:
        committing.kill()
    assert target.read_bytes() == b"the user's new file"
    assert state.get("f.txt").event_id == "U" * 32 + ":1"
    assert rescanned == ["f.txt"]
    assert sorted(os.listdir(root)) == ["f.txt"], "a temporary file stayed"
