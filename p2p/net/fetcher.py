"""Bring a file version's content here: fetch the blocks we lack, then write it.

A ``FileJob`` opens a temporary file beside the destination, copies in the
blocks the store already has (from any file or older version, at any offset:
blocks are content-defined, so an insert or a delete anywhere in a large file
moves about one block), and, when the file grew or shrank across a size tier
of the chunker (so no old block can match), re-cuts our current copy as the
new size would and takes the blocks it finds there; it requests the others from the
connected peers in parallel — each block from the least busy peer that has
the event, falling back to the others. Each block is verified on arrival (the
session checks its hash), kept in the store for history, and written at its
offsets (those written in bulk threads hold a share of
``limits.MAX_BYTES_LANDING`` from their request until written: blocks that
arrive faster than the disk takes them do not pile up in memory); the file
is written once, then fsynced and renamed into place. Jobs run in a
bounded pool. A job that cannot finish (no connected peer has a
block; with no peer connected at all it creates nothing: no temporary file,
no parent directory) is listed as "waiting for a peer that has its content" (one warning),
retried with a back-off and at once when a peer connects; a large file keeps
what arrived (``p2p.folder.partials``), so the transfer resumes.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import time
from dataclasses import dataclass, field

import gevent
from gevent.pool import Pool

from p2p import limits
from p2p.blocks.chunking import WHOLE, chunk_sizes, read_blocks
from p2p.blocks.store import BlockMissing, CorruptBlock
from p2p.folder.apply import UnsafeTarget
from p2p.net.session import Budget, SessionClosed, forged_block
from p2p.units import human_size
from p2p.wire.errors import WireError

log = logging.getLogger("p2p.fetch")

MAX_FILES_AT_ONCE = 48
RETRY_DELAY = 2.0
WAITING = "waiting for a peer that has its content"   # the not-synced reason of a job no peer can serve
RATE_SAMPLES = 6        # one a second (Node._progress_loop): the transfer rate is over the last 5 s


class BlocksUnavailable(Exception):
    pass


@dataclass
class FileJob:
    path: str
    event: object
    total: int = 0
    done: int = 0
    planned: bool = False     # total is known (the blocks to fetch are chosen)
    started: float = field(default_factory=time.monotonic)

    @property
    def remaining(self) -> int:
        """Bytes still to fetch (the whole file until its blocks are chosen)."""
        return self.total - self.done if self.planned else self.event.size

    def progress(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return {"path": self.path, "event": self.event.id, "bytes": self.total, "done": self.done,
                "rate": self.done / elapsed, "started": self.planned}


class Fetcher:
    """The collaborators it is given: the folder ``root``, the local ``state``,
    the block ``store`` and the ``archive`` of large files not stored yet, the
    folder ``writer``, ``partials`` (interrupted large downloads), the
    ``unsynced`` table, the ``bulkpool`` (large buffers) and the peer
    ``registry`` (whom to ask). The ``reconciler`` (is a version still
    wanted, commit it, look again) is set once it exists, as it needs the
    fetcher."""

    def __init__(self, *, root, state, store, archive, writer, partials, unsynced, bulkpool, registry):
        self.root = root
        self.state = state
        self.store = store
        self.archive = archive
        self.writer = writer
        self.partials = partials
        self.unsynced = unsynced
        self.bulkpool = bulkpool
        self.registry = registry
        self.reconciler = None
        self.jobs: dict = {}            # path -> FileJob
        self.unavailable: set = set()   # paths whose blocks no connected peer had
        self.pool = Pool(MAX_FILES_AT_ONCE)
        self.landing = Budget(limits.MAX_BYTES_LANDING // limits.SMALL_BLOCK, limits.MAX_BYTES_LANDING)
        self.received = 0               # bytes of blocks fetched, ever (for the rate)
        self._samples = collections.deque(maxlen=RATE_SAMPLES)   # (monotonic time, received)

    def want(self, path: str, event) -> None:
        job = self.jobs.get(path)
        if job is not None:
            return  # the running job re-checks the wanted version when it ends
        job = self.jobs[path] = FileJob(path, event)
        self.pool.spawn(self._run, job)

    def _run(self, job: FileJob) -> None:
        pending = None
        temp = None
        try:
            event = job.event
            if not self.reconciler.still_wanted(job.path, event):
                return
            if not self._source_possible(job.path, event):
                raise BlocksUnavailable("no peer is connected")
            if event.size > limits.RESUME_MIN:
                temp, stale = self.partials.begin(job.path, event.id)
                for old in stale:   # an older version's interrupted transfer: superseded
                    self.writer.remove_temporary(old)
            pending = self.writer.begin_file(job.path, event, resume_as=temp)  # a few metadata syscalls
            layout = pending.layout()
            local = {h: offs for h, offs in layout.items() if self.store.has(h)}
            in_files = {h: offs for h, offs in layout.items() if h not in local and h in self.archive}
            remote = {h: offs for h, offs in layout.items() if h not in local and h not in in_files}
            sizes = dict(event.blocks)
            if pending.resumed and remote:   # an interrupted transfer: keep what it verifiably has
                here = self.bulkpool.apply(pending.blocks_present, (remote, sizes))
                if here:
                    log.info("%s: resuming, %s of %s already here", job.path,
                             human_size(sum(sizes[h] for h in here)), human_size(event.size))
                remote = {h: offs for h, offs in remote.items() if h not in here}
            if remote and self._recut_worthwhile(job.path, event):
                remote = self.bulkpool.apply(self._copy_from_recut, (job.path, event, pending, remote))
            job.total = sum(sizes[h] for h in remote)
            job.planned = True
            if local:
                self.bulkpool.apply(pending.copy_from_store, (local,))
            if in_files:   # blocks of a large file that is not archived yet
                remote.update(self.bulkpool.apply(self._copy_from_files, (pending, in_files)))
            if remote:
                missing = self._fetch_all(job, pending, remote, sizes)
                if missing:
                    raise BlocksUnavailable(f"{missing} of {len(remote)} blocks")
            self.reconciler.commit_remote_file(pending)
            pending = None
        except BlocksUnavailable as exc:
            delay = self._retry_later(job.path, WAITING)
            log.debug("%s: %s unavailable; retrying in %.0fs", job.path, exc, delay)
            self.unavailable.add(job.path)   # and at once when a peer connects
            if pending is not None and temp is not None:
                pending.keep()   # what arrived stays, verified again when the transfer resumes
                pending = temp = None
        except UnsafeTarget as exc:
            log.warning("refusing to write %s", exc)
        except OSError as exc:   # no room (or an I/O error) where the file or its blocks go
            self._retry_later(job.path, f"cannot write it: {exc.strerror or exc}")
        except Exception:
            log.exception("fetching %s failed", job.path)
            self.reconciler.look_again_at(time.time() + RETRY_DELAY, job.path)
        finally:
            if pending is not None:
                pending.abort()
            if temp is not None:
                self.partials.end(temp)
            self.jobs.pop(job.path, None)
            self.reconciler.fetch_finished(job)

    def _source_possible(self, path: str, event) -> bool:
        """Whether this version can be brought here now: a peer is connected,
        or every block is here already (the store, a file not archived yet, our
        copy re-cut). Otherwise nothing is created for it (no temporary file,
        no parent directory): 200,000 files no peer has must not leave a tree
        of empty directories to walk and watch."""
        if any(not session.closed.is_set() for session in self.registry.sessions()):
            return True
        if all(self.store.has(h) or h in self.archive for h, _ in event.blocks):
            return True
        return self._recut_worthwhile(path, event)

    def _retry_later(self, path: str, reason: str) -> float:
        """List ``path`` as not synced (one warning) and fetch it again after the back-off."""
        problem = self.unsynced.report(path, reason, time.time())
        self.reconciler.look_again_at(problem.retry_at, path)
        return max(0.0, problem.retry_at - time.time())

    def _fetch_all(self, job: FileJob, pending, remote: dict, sizes: dict) -> int:
        """Fetch every block of ``remote`` in parallel; how many no peer could give.
        A worker that fails for a reason other than a missing block is a bug:
        re-raised here, once."""
        workers = [gevent.spawn(self._fetch_block_or_error, job, pending, h, sizes[h], offs)
                   for h, offs in remote.items()]
        gevent.joinall(workers)
        errors = [w.value for w in workers if isinstance(w.value, Exception)]
        if errors:
            raise errors[0]
        return sum(1 for w in workers if w.value is not True)

    def _fetch_block_or_error(self, job: FileJob, pending, block_hash: str, size: int, offsets):
        """True once the block is written; False if no connected peer has it;
        the exception if something else went wrong (the job reports it)."""
        try:
            return self._fetch_block(job, pending, block_hash, size, offsets)
        except Exception as exc:
            return exc

    def _fetch_block(self, job: FileJob, pending, block_hash: str, size: int, offsets) -> bool:
        """``_fetch_from_peers``; a block landed in a bulk thread (a large one, or
        any of a file archived later) holds its share of ``landing`` from its
        request until it is written."""
        large = size > limits.SMALL_BLOCK   # hashed with its write, off the hub (not in the reader)
        archive_later = job.event.size > limits.ARCHIVE_LATER_MIN
        if not large and not archive_later:
            return self._fetch_from_peers(job, pending, block_hash, size, offsets, large, archive_later)
        self.landing.acquire(size)
        try:
            return self._fetch_from_peers(job, pending, block_hash, size, offsets, large, archive_later)
        finally:
            self.landing.release(size)

    def _fetch_from_peers(self, job: FileJob, pending, block_hash: str, size: int, offsets,
                          large: bool, archive_later: bool) -> bool:
        tried = set()
        while True:
            session = self._pick(job.event, tried)
            if session is None:
                return False
            tried.add(session)
            try:
                data = session.request_block(block_hash, size, checked_by_caller=large)
            except (SessionClosed, gevent.Timeout):
                continue
            if data is None:
                continue
            if not large and not archive_later:
                self._land(pending, block_hash, data, offsets)   # small: cheaper than a thread hop
            elif not self.bulkpool.apply(self._write_received,
                                              (pending, block_hash, data, offsets, large, archive_later)):
                session.drop(WireError(f"peer sent {forged_block(block_hash)}"))
                continue
            job.done += len(data)
            self.received += len(data)
            return True

    def _write_received(self, pending, block_hash: str, data, offsets, verify: bool, archive_later: bool) -> bool:
        """In a bulk thread: check a block against the hash we asked for (if
        ``verify``; False if it is not that block: nothing is written), then
        write it (a large file's once now, archived once in place; another's
        through the store)."""
        if verify and hashlib.sha256(data).hexdigest() != block_hash:
            return False
        if archive_later:
            pending.write_block(offsets, data)
        else:
            self._land(pending, block_hash, data, offsets)
        return True

    def _land(self, pending, block_hash: str, data, offsets) -> None:
        """Keep a verified block in the store (for history) and write it into the
        file: a large block is copied from the store in the kernel (one write
        through user space), a small one written from memory (fewer syscalls).
        A small file's blocks are stored with its batch (SmallCommits), off the hub."""
        if pending.event.size <= limits.SMALL_BLOCK:
            pending.to_store.append((block_hash, data))
            pending.write_block(offsets, data)
            return
        self.store.put(block_hash, data, verified=True)
        if len(data) <= limits.SMALL_BLOCK:
            pending.write_block(offsets, data)
        else:
            pending.write_stored_block(block_hash, offsets, verify=False)

    def _copy_from_files(self, pending, blocks: dict) -> dict:
        """Copy blocks from the local files that hold them; those that changed are returned."""
        gone = {}
        for block_hash, offsets in blocks.items():
            try:
                pending.write_block(offsets, self.archive.read(block_hash))
            except BlockMissing:
                try:   # archived (and its file changed or removed) meanwhile?
                    pending.write_stored_block(block_hash, offsets)
                except (BlockMissing, CorruptBlock):
                    gone[block_hash] = offsets
        return gone

    def _recut_worthwhile(self, path: str, event) -> bool:
        """True if our current file at ``path`` was cut at another size tier than
        ``event`` (it grew or shrank across a tier's edge): none of its blocks can
        match the new ones, though most of its content is likely still there."""
        tier = chunk_sizes(event.size)
        if tier == WHOLE:   # one block: nothing to find (and no lookup for a small file)
            return False
        entry = self.state.get(path)
        return entry is not None and entry.kind == "file" and chunk_sizes(entry.size) != tier

    def _copy_from_recut(self, path: str, event, pending, remote: dict) -> dict:
        """Read our current file at ``path`` once, cut as the new version's size
        would be, and write every block of ``remote`` found in it (hashed as
        read: verified); the blocks still to fetch are returned."""
        def take(block_hash, data, _fd, _offset):
            offsets = remote.pop(block_hash, None)
            if offsets is not None:
                pending.write_block(offsets, data)
        try:
            read_blocks(self.root / path, on_block=take, cut_as=event.size)
        except OSError as exc:   # gone or written meanwhile (FileChanged): what is left comes from peers
            log.debug("%s: not re-cut: %s", path, exc)
        return remote

    def _pick(self, event, tried):
        """The least busy connected peer not tried yet, preferring those that have the event."""
        sessions = [s for s in self.registry.sessions() if s not in tried and not s.closed.is_set()]
        if not sessions:
            return None
        return min(sessions, key=lambda s: (not s.covers(event), s.outstanding))

    def take_unavailable(self) -> set:
        """The paths that waited for a peer with their blocks (a new one may have them)."""
        paths, self.unavailable = self.unavailable, set()
        return paths

    def status(self, limit: int = None) -> list:
        """The jobs' progress, those under way first (at most ``limit``)."""
        jobs = sorted(self.jobs.values(), key=lambda job: not job.planned)
        return [job.progress() for job in jobs[:limit]]

    def sample(self) -> None:
        """Note the bytes received so far (the node calls this every second)."""
        self._samples.append((time.monotonic(), self.received))

    def rate(self) -> float:
        """Bytes per second received over the last few seconds."""
        if len(self._samples) < 2:
            return 0.0
        (t0, r0), (t1, r1) = self._samples[0], self._samples[-1]
        return (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0

    def summary(self) -> dict:
        """All the transfers together: files, bytes to fetch and fetched, the
        rate and the time left at that rate (None: unknown)."""
        remaining = sum(job.remaining for job in self.jobs.values())
        done = sum(job.done for job in self.jobs.values())
        rate = self.rate()
        return {"files": len(self.jobs), "bytes": remaining + done, "done": done, "rate": rate,
                "eta": remaining / rate if rate > 0 and remaining else None}
