"""How many files the fetcher works on at once: small files (one block at
most) have their own, larger bound, in count and in bytes, as each waits for
its batch's commit (fsyncs) and more of them at once make larger batches; a
larger file's bound stays MAX_FILES_AT_ONCE. The caller (the reconciler)
waits while a class is at its bound, and every place is given back."""

from types import SimpleNamespace

import gevent
import pytest
from gevent.event import Event

from p2p import limits
from p2p.folder.unsynced import Unsynced
from p2p.net.fetcher import MAX_FILES_AT_ONCE, Fetcher


def _fetcher(gate: Event):
    def still_wanted(path, event):   # the job holds its place until the gate opens, then ends
        gate.wait()
        return False
    fetcher = Fetcher(root=None, state={}, store=None, archive=set(), writer=None, partials=None,
                      unsynced=Unsynced(), bulkpool=None, registry=SimpleNamespace(sessions=lambda: []))
    fetcher.reconciler = SimpleNamespace(still_wanted=still_wanted, fetch_finished=lambda job: None)
    return fetcher


def _event(i: int, size: int):
    return SimpleNamespace(id=f"A:{i}", size=size, blocks=((f"{i:064x}", size),))


def _want_all(fetcher, count: int, size: int):
    """Want ``count`` files of ``size`` bytes from a greenlet (it waits at the
    bound); the number of jobs running once it is stuck or done."""
    asker = gevent.spawn(lambda: [fetcher.want(f"f{i}", _event(i, size)) for i in range(count)])
    gevent.sleep(0.05)
    return asker, len(fetcher.jobs)


def _release(fetcher, gate: Event, asker) -> None:
    gate.set()
    asker.join(timeout=10)
    fetcher.pool.join(timeout=10)
    assert asker.dead and not fetcher.jobs


def test_more_small_files_at_once_than_larger_ones():
    gate = Event()
    fetcher = _fetcher(gate)
    asker, running = _want_all(fetcher, limits.SMALL_FILES_AT_ONCE + 10, 1000)
    assert running == limits.SMALL_FILES_AT_ONCE > MAX_FILES_AT_ONCE
    assert not asker.dead   # the reconciler waits for a place
    _release(fetcher, gate, asker)
    assert fetcher._small_slots.used_count == fetcher._small_slots.used_size == 0


def test_small_files_are_bounded_by_their_bytes_too(monkeypatch):
    monkeypatch.setattr(limits, "SMALL_FILES_BYTES", 10_000)
    gate = Event()
    fetcher = _fetcher(gate)
    asker, running = _want_all(fetcher, 10, 3000)
    assert running == 3   # a fourth would hold 12,000 bytes
    _release(fetcher, gate, asker)


def test_larger_files_keep_their_bound():
    gate = Event()
    fetcher = _fetcher(gate)
    asker, running = _want_all(fetcher, MAX_FILES_AT_ONCE + 10, limits.SMALL_BLOCK + 1)
    assert running == MAX_FILES_AT_ONCE
    _release(fetcher, gate, asker)
    assert fetcher._large_slots.counter == MAX_FILES_AT_ONCE   # every place came back


@pytest.mark.parametrize("size", [1000, limits.SMALL_BLOCK + 1])
def test_a_path_already_fetched_takes_no_second_place(size):
    gate = Event()
    fetcher = _fetcher(gate)
    fetcher.want("f", _event(1, size))
    fetcher.want("f", _event(2, size))
    gevent.sleep(0)
    assert len(fetcher.jobs) == 1
    gate.set()
    fetcher.pool.join(timeout=10)
    assert fetcher._small_slots.used_count == 0 and not fetcher.jobs
