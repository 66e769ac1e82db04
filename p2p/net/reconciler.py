"""Bring the folder to the winning versions: for every path whose winner may
differ from the disk, remove, make a directory, replace what is in the way,
or hand the file to the fetcher; keep our losing versions as conflict copies;
archive large files into the block store once transfers are quiet.

The decisions are the pure functions of ``p2p.sync.plan``; this is the gevent
glue that applies them (file work in the node's thread pools). A pass reads
the winners of its dirty paths ``limits.RECONCILE_CHUNK`` at a time, so
memory does not grow with how many paths differ; paths to look at again
later wait in heaps (one entry each, not a timer each).

A path it cannot write (a symbolic link, FIFO or other special file in the
way, an I/O error, an unexpected error) is listed in ``node.unsynced`` (one
warning) and retried after a back-off that doubles up to
``limits.UNSYNCED_RETRY_MAX``, or at once when the path is marked dirty again
(a scan of it: the watcher saw it change, or a new version arrived).
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from dataclasses import replace

import gevent
from gevent.event import AsyncResult, Event

from p2p import limits
from p2p.units import human_size
from p2p.folder.apply import ContentMismatch, LocalChanged, UnsafeTarget
from p2p.folder.archive import slices, warn_changed
from p2p.history.precedence import why_wins, winner
from p2p.logs import say
from p2p.sync.conflicts import conflict_name
from p2p.sync.plan import (FETCH, MAKE_DIR, METADATA, RELABEL, REMOVE, REPLACE, conflict_copies, folder_action,
                           paths_to_recheck)

log = logging.getLogger("p2p.reconcile")

class SmallCommits:
    """Small files finished at about the same time are committed together:
    their temporary files are created, written and fsynced
    ``limits.FSYNC_THREADS`` at once in the thread pool (concurrent fsyncs
    share the file system's journal commits, and each waits for its own
    file's data only, not for everything the disk has to write as a syncfs
    did), then each is renamed into place. The blocks received for the batch
    are kept in the store together (one pack write), and the local state
    records the batch's intents in one transaction (made durable before the
    renames) and the placed files in one more, instead of a block write in
    the hub and two transactions per file."""

    GATHER = 0.005         # s to let a batch form

    def __init__(self, *, root, history, state, writer, threadpool):
        self.root = root
        self.history = history
        self.state = state
        self.writer = writer
        self.threadpool = threadpool
        self.waiting: list = []
        self._wake = Event()

    def commit(self, pending):
        """Make ``pending`` durable and place it; raises what placing raised."""
        result = AsyncResult()
        self.waiting.append((pending, result))
        self._wake.set()
        return result.get()

    def run(self) -> None:
        while True:
            self._wake.wait()
            gevent.sleep(self.GATHER)
            self._wake.clear()
            batch, self.waiting = self.waiting, []
            try:
                self.history.sync()   # the events these files are versions of, before the files
                outcomes = self._commit_all([p for p, _ in batch])
            except Exception as exc:   # a failed log fsync, or a bug: each file of the batch is told (and
                outcomes = [exc] * len(batch)   # retried), none waits for ever with its path held by the fetcher
            for (_, result), outcome in zip(batch, outcomes):
                if isinstance(outcome, BaseException):
                    result.set_exception(outcome)
                else:
                    result.set(outcome)

    def _commit_all(self, pendings) -> list:
        """Each pending file's outcome (None, or what it raised): stored, then
        written and fsynced (several threads at once), their intents recorded
        and made durable, then placed (pool threads do the work)."""
        pool = self.threadpool
        try:   # the blocks received for them (history), packed together
            pool.apply(self.writer.store.put_many, ([block for pending in pendings for block in pending.to_store],),
                       {"verified": True})
        except OSError as exc:   # no room for the history: none is placed (each is retried)
            return [exc] * len(pendings)
        groups = [pendings[i::limits.FSYNC_THREADS] for i in range(min(limits.FSYNC_THREADS, len(pendings)))]
        outcomes = [None] * len(pendings)
        for i, result in enumerate([pool.spawn(_finish_all, group) for group in groups]):
            outcomes[i::limits.FSYNC_THREADS] = result.get()
        return pool.apply(self._place_all, (pendings, outcomes))

    def _place_all(self, pendings, outcomes) -> list:
        """In a pool thread: the intents of the durable files recorded in one
        transaction and made durable, then the files placed."""
        try:   # one transaction for the batch's intents
            self.writer.intend_all([pending for pending, outcome in zip(pendings, outcomes) if outcome is None])
            self.state.sync()
        except OSError as exc:   # the record of the renames may not be durable: place none (each is retried)
            return [exc if outcome is None else outcome for outcome in outcomes]
        ready = [i for i, outcome in enumerate(outcomes) if outcome is None]
        for i, outcome in zip(ready, self.writer.place_all([pendings[i] for i in ready])):
            outcomes[i] = outcome
        return outcomes


def _finish_all(pendings) -> list:
    """In a pool thread: each file's content written and fsynced (None), or what that raised."""
    outcomes = []
    for pending in pendings:
        try:
            pending.finish(durable=True)
            outcomes.append(None)
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _outcome(fn, args):
    """In a pool thread: (True, what ``fn`` returned) or (False, what it raised)."""
    try:
        return True, fn(*args)
    except Exception as exc:
        return False, exc


class Reconciler:
    """The collaborators it is given: the ``history`` (winners), the local
    ``state``, the block ``store`` and the ``archive`` of large files not
    stored yet, the folder ``writer``, the ``unsynced`` table, the ``fetcher``
    (content to bring), ``rescan`` (LocalChanges: record what changed on disk),
    the two thread ``pools`` (short work, large buffers), ``gates`` to wait
    on before writing (the start-up scan, the folder there, not paused),
    ``ignored`` (the .p2pignore rules), ``quiet`` (no transfer running: large
    files are archived then), ``label`` (a device as activity lines name it)
    and ``spawn`` (a supervised greenlet)."""

    def __init__(self, *, root, history, state, store, archive, writer, unsynced, fetcher, rescan,
                 pools, gates, ignored, quiet, label, spawn):
        self.root = root
        self.history = history
        self.state = state
        self.store = store
        self.archive = archive
        self.writer = writer
        self.unsynced = unsynced
        self.fetcher = fetcher
        self.rescan = rescan
        self.threadpool, self.bulkpool = pools
        self.gates = gates
        self.ignored = ignored
        self.quiet = quiet
        self.label = label
        self.spawn = spawn
        self.small_commits = SmallCommits(root=root, history=history, state=state, writer=writer,
                                          threadpool=self.threadpool)
        self.dirty: set = set()
        self._wake = Event()
        self.blocked: dict = {}     # path -> when to retry it (listed in node.unsynced by this loop)
        self._conflicts_said: dict = {}   # path -> the ids of the concurrent versions announced
        self._retries: list = []    # heap of (retry time, path); stale once blocked[path] moved
        self._later: list = []      # heap of (time, path) to look at again (a fetch that waits for a peer)

    def mark_dirty(self, paths) -> None:
        self.dirty.update(paths)
        if self.dirty:
            self._wake.set()

    def busy(self, paths) -> set:
        """Of ``paths``, those this loop or the fetcher has business at, whatever
        the disk holds: blocked (listed as not synced, retried after a
        back-off; a look clears it once the disk holds its winner, and dirties
        what waited under it), or content being fetched. A scan that settled
        a path still hands these to the reconciler."""
        blocked, jobs = self.blocked, self.fetcher.jobs
        return {path for path in paths if path in blocked or path in jobs}

    def look_again_at(self, at: float, path: str) -> None:
        """Mark ``path`` dirty at time ``at``: one heap entry, not a timer
        (a greenlet) per path, so 200,000 files waiting for a peer cost
        little memory."""
        heapq.heappush(self._later, (at, path))
        self._wake.set()

    def run(self) -> None:
        scanned, *open_gates = self.gates
        scanned.wait()   # the start-up scan: what is on disk is recorded before anything replaces it
        while True:
            self._wake.wait(self._until_next_retry())
            for gate in open_gates:   # the folder is there (never write beside a missing one), not paused
                gate.wait()
            self._wake.clear()
            paths, self.dirty = sorted(self.dirty | self._due_retries()), set()
            gone = []   # written after every path that has content, deepest first
            for start in range(0, len(paths), limits.RECONCILE_CHUNK):
                targets = self._targets(paths[start:start + limits.RECONCILE_CHUNK])
                gone += (p for p, t in targets.items() if t is None or t.type == "delete")
                self._reconcile_all((p, t) for p, t in targets.items() if t is not None and t.type != "delete")
            gone.sort(key=lambda p: p.count("/"), reverse=True)
            for start in range(0, len(gone), limits.RECONCILE_CHUNK):
                self._reconcile_all(self._targets(gone[start:start + limits.RECONCILE_CHUNK]).items())

    def _reconcile_all(self, targets) -> None:
        """Reconcile each (path, target); one path's failure is reported, never
        the others'. The directories to make come first, made together (one
        pool hand-off and one local-state transaction for the chunk, not one
        each); one in the way of something (LocalChanged: a file where a
        parent goes, replaced later in this chunk) is tried again alone after
        the rest."""
        targets = list(targets)
        entries = self.state.get_many([path for path, _ in targets])
        dirs, rest = [], []
        for path, target in targets:
            if path and not self.ignored(path) and self._makes_dir(target, entries.get(path)):
                dirs.append((path, target))
            else:
                rest.append((path, target))
        kept = []
        for path, target in dirs:
            try:
                self._keep_conflict_copies(path)
            except Exception as exc:
                self._settle(path, exc)
            else:
                kept.append((path, target))
        if kept:
            for (path, target), outcome in zip(kept, self.threadpool.apply(self.writer.make_dirs, (kept,))):
                if isinstance(outcome, LocalChanged):
                    rest.append((path, target))
                else:
                    self._settle(path, outcome)
        for path, target in rest:
            self._attempt(path, self._reconcile, path, target)

    @staticmethod
    def _makes_dir(target, entry) -> bool:
        return target is not None and folder_action(target, entry.kind if entry else None, "",
                                                    entry.event_id if entry else "") == MAKE_DIR

    def _attempt(self, path: str, fn, *args) -> None:
        """``fn(*args)`` for ``path``, its outcome settled (``_settle``)."""
        try:
            fn(*args)
        except Exception as exc:
            self._settle(path, exc)
        else:
            self._settle(path, None)

    def _settle(self, path: str, error) -> None:
        """What writing ``path`` ended with: ``error`` (None: done) is reported
        and retried, or a path that waited is cleared, and what waited for it dirtied."""
        if isinstance(error, LocalChanged):
            self.rescan([str(error)])
        elif isinstance(error, UnsafeTarget):
            self._cannot_write(path, error.reason)
        elif isinstance(error, OSError):
            self._cannot_write(path, f"cannot write it: {error.strerror or error}")
        elif error is not None:  # a bug: this path waits, the others go on
            self._cannot_write(path, f"unexpected error: {error!r}", error)
        elif self.blocked.pop(path, None) is not None:
            self.unsynced.clear(path)
            # what waited for this directory can be written now
            self.mark_dirty([p for p in self.blocked if p.startswith(path + "/")])

    def _targets(self, paths) -> dict:
        """path -> its winning version (None if none); a path whose history
        cannot be read is reported instead of stopping the others."""
        targets = {}
        for path in paths:
            try:
                targets[path] = self.history.current(path)
            except Exception as exc:
                self._cannot_write(path, f"unexpected error: {exc!r}", exc)
        return targets

    def _cannot_write(self, path: str, reason: str, error: BaseException = None) -> None:
        """List ``path`` as not synced (one warning) and retry it after the back-off."""
        if error is not None and path not in self.unsynced:
            log.error("while writing %r:", path, exc_info=(type(error), error, error.__traceback__))
        problem = self.unsynced.report(path, reason, time.time())
        self.blocked[path] = problem.retry_at
        heapq.heappush(self._retries, (problem.retry_at, path))

    def _until_next_retry(self):
        """Seconds until the earliest back-off ends (None: none is waiting)."""
        while self._retries and self.blocked.get(self._retries[0][1]) != self._retries[0][0]:
            heapq.heappop(self._retries)   # stale: retried or cleared meanwhile
        first = min(heap[0][0] for heap in (self._retries, self._later) if heap) \
            if self._retries or self._later else None
        return None if first is None else max(0.0, first - time.time())

    def _due_retries(self) -> set:
        now, due = time.time(), set()
        while self._retries and self._retries[0][0] <= now:
            at, path = heapq.heappop(self._retries)
            if self.blocked.get(path) == at:
                due.add(path)
        while self._later and self._later[0][0] <= now:
            due.add(heapq.heappop(self._later)[1])
        return due

    def _on_disk(self, write, *args):
        """Run a FolderWriter call in the thread pool and return its result;
        what it raises is raised here, in the hub (so gevent does not print
        a traceback for an expected LocalChanged or UnsafeTarget)."""
        ok, outcome = self.threadpool.apply(_outcome, (write, args))
        if not ok:
            raise outcome
        return outcome

    def _reconcile(self, path: str, target) -> None:
        if not path or self.ignored(path):
            return
        self._keep_conflict_copies(path)
        entry = self.state.get(path)
        action = folder_action(target, entry.kind if entry else None, entry.hash if entry else "",
                               entry.event_id if entry else "", (entry.mode, entry.mtime) if entry else None)
        if action == REMOVE:
            if entry.kind == "file" and entry.event_id:
                self._archive_now(path, self.history.get(entry.event_id))  # its history outlives it
            if self._on_disk(self.writer.remove, path):
                if target is not None and target.moved_to:   # said as "< rename" once the new name is written
                    log.debug("removed %s: renamed to %s", path, target.moved_to)
                else:
                    say(f"< delete {path}" + (f" from {self.label(target.origin)}" if target else ""))
                self.mark_dirty(paths_to_recheck([path]))
            else:
                log.info("kept directory %s: it holds files added meanwhile", path)
        elif action == MAKE_DIR:
            self._on_disk(self.writer.make_dir, path, target)
        elif action == REPLACE:   # a file where a directory won, or the reverse
            if entry.kind == "file" and entry.event_id:
                self._archive_now(path, self.history.get(entry.event_id))
            if not self._on_disk(self.writer.remove, path):
                log.warning("cannot put a file at %s: the directory there holds files", path)
                return
            self.mark_dirty([path])   # now the plain make_dir or fetch
        elif action == METADATA:
            self._on_disk(self.writer.set_metadata, path, target)
            say(f"< metadata {path} from {self.label(target.origin)}")
        elif action == RELABEL:
            self.state.set(path, replace(entry, event_id=target.id))
        elif action == FETCH:
            self.writer.check_target(path)   # a link or FIFO in the way: refused before any transfer
            self.fetcher.want(path, target)

    def _keep_conflict_copies(self, path: str) -> None:
        """Our version lost to a concurrent one: keep it beside, as a conflict copy."""
        heads = self.history.heads(path)
        self._say_conflict(path, heads)
        for copy, loser in conflict_copies(path, heads, self.history.device_id):
            if self.history.heads(copy) or os.path.lexists(self.root / copy):
                continue
            self._archive_now(path, loser)
            if self.store.missing(loser.blocks):
                log.warning("cannot keep %s as %s: its content is gone from this peer", path, copy)
                continue
            self.threadpool.apply(self.writer.write_file, (copy, loser))
            self.state.pop(copy)  # not recorded yet: the local loop records it
            self.rescan([copy])
            log.debug("kept our version of %s as %s", path, copy)

    def _say_conflict(self, path: str, heads) -> None:
        """Once per set of concurrent versions, on every peer: who won, why, and
        which conflict copy keeps each losing version (its origin writes it)."""
        if len(heads) < 2:
            self._conflicts_said.pop(path, None)
            return
        key = frozenset(e.id for e in heads)
        if self._conflicts_said.get(path) == key:
            return
        self._conflicts_said[path] = key
        best = winner(heads)
        label = self.label
        for loser in heads:
            if loser is best or (loser.hash == best.hash and loser.kind == best.kind
                                 and loser.is_delete == best.is_delete):
                continue
            text = (f"! conflict on {path}: {label(best.origin)} wins over {label(loser.origin)} "
                    f"({why_wins(best, loser)})")
            if not loser.is_delete and loser.kind == "file":
                text += f"; the losing version is kept as {conflict_name(path, loser)} (time in UTC)"
            say(text, logging.WARNING)

    def still_wanted(self, path: str, event) -> bool:
        current = self.history.current(path)
        if current is None or current.id != event.id:
            self.mark_dirty([path])
            return False
        return True

    def commit_remote_file(self, pending) -> None:
        """Called by the fetcher once every block is written: check the whole
        file against the event's hash (in the pool that commits) and rename
        it into place."""
        path, event = pending.path, pending.event
        if not self.still_wanted(path, event):
            pending.abort()
            return
        entry = pending.expected = self.state.get(path)   # (no yield since: what the placing checks it still is)
        self._keep_conflict_copies(path)
        existed = entry is not None
        if existed and entry.event_id:
            self._archive_now(path, self.history.get(entry.event_id))  # the version we replace
        try:
            if event.size > limits.SMALL_BLOCK:
                self.history.sync()   # the event this file is a version of, before the file
                self.bulkpool.apply(pending.commit)
            else:
                self.small_commits.commit(pending)
            if event.size > limits.ARCHIVE_LATER_MIN:
                self.archive_later(path, event.blocks)
        except LocalChanged:
            self.rescan([path])
            return
        except ContentMismatch as exc:   # not placed: refetched after a back-off, said once
            log.debug("%s", exc)
            problem = self.unsynced.report(path, "the content fetched does not match its event's hash",
                                                time.time())
            self.look_again_at(problem.retry_at, path)
            return
        self.unsynced.clear(path)
        origin = self.label(event.origin)
        if event.moved_from:
            say(f"< rename {event.moved_from} -> {path} ({human_size(event.size)}) from {origin}")
        else:
            say(f"< {'update' if existed else 'create'} {path} ({human_size(event.size)}) from {origin}")

    def fetch_finished(self, job) -> None:
        current = self.history.current(job.path)
        if current is not None and current.id != job.event.id:
            self.mark_dirty([job.path])

    def archive_later(self, path: str, blocks, entry=None) -> None:
        """Copy a large file's blocks into the store in the background (history);
        ``entry``: the path's local entry for them, if the local state has not got it yet."""
        if self.archive.register(path, blocks, entry):
            self.spawn(self._archive_job, path, tuple(blocks))

    def _archive_job(self, path: str, blocks) -> None:
        # on two cores, archiving during a transfer would slow the transfer: a
        # slice at a time, each once nothing has been fetched or served for a
        # moment (the first after that moment too: peers ask for a new file's
        # blocks as soon as its event reaches them)
        lost = 0
        gevent.sleep(limits.ARCHIVE_QUIET)
        for part in slices(blocks, limits.ARCHIVE_SLICE):
            while not self.quiet(limits.ARCHIVE_QUIET):
                gevent.sleep(limits.ARCHIVE_QUIET)
            handled, not_kept = self.bulkpool.apply(self.archive.store_some, (path, part))
            self.archive.forget(path, handled)
            lost += not_kept
        warn_changed(path, lost)

    def _archive_now(self, path: str, event) -> None:
        """Archive a version's pending blocks before its file is overwritten."""
        if event is not None and any(h in self.archive for h, _ in event.blocks):
            self.archive.forget(path, self.bulkpool.apply(self.archive.store_all, (path, event.blocks)))

    def archive_unarchived(self) -> None:
        """After a crash: archive the large current files whose blocks the store lacks
        (only the large files the local state records are looked at, not the whole tree)."""
        for path in self.state.large_files():
            event = self.history.current(path)
            entry = self.state.get(path)
            if (event is not None and not event.is_delete and event.kind == "file"
                    and event.size > limits.ARCHIVE_LATER_MIN and entry is not None
                    and entry.hash == event.hash and self.store.missing(event.blocks)):
                self.archive_later(path, event.blocks)
