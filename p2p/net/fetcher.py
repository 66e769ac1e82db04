"""Bring a file version's content here: fetch the blocks we lack, then write it.

A ``FileJob`` lists the blocks of the wanted version that the block store
lacks (blocks we already have, from any file or older version, are reused:
a 1 MiB change in a large file moves about 1 MiB), requests them from the
connected peers in parallel — each block from the least busy peer that has
the event, falling back to the others — verifies each (the session checks the
hash), and finally assembles the file in the thread pool and renames it into
place. Jobs run in a bounded pool; a job that cannot finish (no peer has a
block yet) is retried later.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import gevent
from gevent.pool import Pool

from p2p.net.session import SessionClosed

log = logging.getLogger("p2p.fetch")

MAX_FILES_AT_ONCE = 4
RETRY_DELAY = 2.0


class BlocksUnavailable(Exception):
    pass


@dataclass
class FileJob:
    path: str
    event: object
    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def progress(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return {"path": self.path, "event": self.event.id, "bytes": self.total, "done": self.done,
                "rate": self.done / elapsed}


class Fetcher:
    def __init__(self, node):
        self.node = node
        self.jobs: dict = {}            # path -> FileJob
        self.pool = Pool(MAX_FILES_AT_ONCE)

    def want(self, path: str, event) -> None:
        job = self.jobs.get(path)
        if job is not None:
            return  # the running job re-checks the wanted version when it ends
        job = self.jobs[path] = FileJob(path, event)
        self.pool.spawn(self._run, job)

    def _run(self, job: FileJob) -> None:
        node = self.node
        try:
            event = job.event
            store = node.store
            missing = {}
            for block_hash, size in event.blocks:
                if block_hash not in missing and not store.has(block_hash):
                    missing[block_hash] = size
            job.total = sum(missing.values())
            if missing:
                workers = [gevent.spawn(self._fetch_block, job, h, s) for h, s in missing.items()]
                gevent.joinall(workers, raise_error=False)
                failed = [w for w in workers if not w.successful()]
                if failed:
                    raise BlocksUnavailable(f"{len(failed)} of {len(workers)} blocks unavailable")
            node.write_remote_file(job.path, event)
        except BlocksUnavailable as exc:
            log.info("%s: %s; retrying in %.0fs", job.path, exc, RETRY_DELAY)
            gevent.spawn_later(RETRY_DELAY, node.mark_dirty, [job.path])
        except Exception:
            log.exception("fetching %s failed", job.path)
            gevent.spawn_later(RETRY_DELAY, node.mark_dirty, [job.path])
        finally:
            self.jobs.pop(job.path, None)
            node.fetch_finished(job)

    def _fetch_block(self, job: FileJob, block_hash: str, size: int) -> None:
        tried = set()
        while True:
            session = self._pick(job.event, tried)
            if session is None:
                raise BlocksUnavailable(block_hash)
            tried.add(session)
            try:
                data = session.request_block(block_hash, size)
            except (SessionClosed, gevent.Timeout):
                continue
            if data is None:
                continue
            self.node.store.put(block_hash, data)
            job.done += len(data)
            return

    def _pick(self, event, tried):
        """The least busy connected peer not tried yet, preferring those that have the event."""
        sessions = [s for s in self.node.registry.sessions() if s not in tried and not s.closed.is_set()]
        if not sessions:
            return None
        return min(sessions, key=lambda s: (not s.covers(event), s.outstanding))

    def status(self) -> list:
        return [job.progress() for job in self.jobs.values()]
