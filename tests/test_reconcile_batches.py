"""The reconciler's pass over many dirty paths: winners read a bounded chunk
at a time (200,000 dirty paths at start must not hold 200,000 events), every
path with content written before any removal, removals deepest first, and a
path to look at again later waits in one heap, not in a timer each."""

import time
import types

import gevent
import pytest
from gevent.event import Event

from p2p import limits
from p2p.net.reconciler import Reconciler


def _reconciler(monkeypatch, versions: dict):
    """A reconciler over ``versions`` (path -> "file" | "delete" | None) that
    records, instead of writing, the order it reconciles paths in, and the
    size of each read of winners."""
    history = types.SimpleNamespace(current=lambda path: None if versions[path] is None
                                    else types.SimpleNamespace(type=versions[path]))
    scanned = Event()
    scanned.set()
    reconciler = Reconciler(
        root=None, history=history, state=None, store=None, archive=None, writer=None, unsynced=None,
        fetcher=None, rescan=None, pools=(None, None), gates=(scanned,), ignored=None, quiet=None,
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
