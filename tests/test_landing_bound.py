"""Blocks landed in bulk threads are bounded from their request until they
are written (``limits.MAX_BYTES_LANDING``, over every peer): a peer's
request budget ends when a block arrives, so without this bound blocks that
arrive faster than the disk takes them wait in memory, up to a whole file."""

import hashlib
from types import SimpleNamespace

import gevent
import gevent.lock

from p2p import limits
from p2p.net.fetcher import FileJob, Fetcher

BLOCK = limits.SMALL_BLOCK + 4096      # a large block: written in a bulk thread
BOUND = 4 * BLOCK


class Counting:
    """A peer that answers every request at once, and a disk that writes one
    block at a time, slowly: counts the bytes asked for and not yet written."""

    def __init__(self):
        self.closed = SimpleNamespace(is_set=lambda: False)
        self.outstanding = 0
        self.unwritten = self.most = 0
        self.disk = gevent.lock.Semaphore()

    def covers(self, event):
        return True

    def request_block(self, block_hash, size, checked_by_caller=False):
        self.unwritten += size
        self.most = max(self.most, self.unwritten)
        gevent.sleep(0)
        return BLOCKS[block_hash]

    def apply(self, fn, args):   # the bulk pool
        with self.disk:
            gevent.sleep(0.001)
            result = fn(*args)
        self.unwritten -= len(args[2])
        return result


BLOCKS = {hashlib.sha256(data).hexdigest(): data for data in (bytes([i]) * BLOCK for i in range(40))}


def _fetch(monkeypatch, file_size):
    monkeypatch.setattr(limits, "MAX_BYTES_LANDING", BOUND)
    peer = Counting()
    fetcher = Fetcher(root=None, state={}, store=None, archive=set(), writer=None, partials=None,
                      unsynced=None, bulkpool=peer, registry=SimpleNamespace(sessions=lambda: [peer]))
    written = []
    pending = SimpleNamespace(write_block=lambda offsets, data: written.append(offsets[0]))
    event = SimpleNamespace(size=file_size, blocks=tuple((h, BLOCK) for h in BLOCKS))
    remote = {h: [i * BLOCK] for i, h in enumerate(BLOCKS)}
    missing = fetcher._fetch_all(FileJob("big.bin", event), pending, remote, dict(event.blocks))
    return peer, missing, written


def test_blocks_asked_for_and_not_yet_written_stay_within_the_bound(monkeypatch):
    peer, missing, written = _fetch(monkeypatch, file_size=len(BLOCKS) * BLOCK)
    assert missing == 0 and sorted(written) == [i * BLOCK for i in range(len(BLOCKS))]
    assert BLOCK < peer.most <= BOUND   # several in flight, never more than the bound
    assert peer.unwritten == 0
