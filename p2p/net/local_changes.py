"""Turn changes on disk into events: the local loop.

Coalesced paths from the watcher (and the start-up scan, path "") are
expanded to their subtrees, scanned several at once in the thread pool, and
recorded as events: moves paired by content hash into renames, deletes
children first, parents from what the disk held (``p2p.sync.plan``). One
fsync for the batch, then the broadcaster sends it.

One path never stops the loop: a name no event can carry, a file that cannot
be read, or an unexpected error while handling one path is listed in
the ``unsynced`` table (one warning; a traceback once for an unexpected error), and
the rest of the batch goes on. Such a path leaves the table once a scan finds
it gone or syncable.

A history write the home disk refuses (or a block or a local-state line it
cannot store) holds the node (``DiskGuard``): the local state is updated only
for changes whose event was written, so the others are found again when their
paths are rescanned once the disk has room (a change whose event was written
but not its state line is then found already recorded); meanwhile paths to
scan are remembered, not scanned.
"""

from __future__ import annotations

import collections
import logging
import os
import time

from gevent.queue import Queue

from p2p import limits
from p2p.units import human_size
from p2p.folder.scan import Change, FileBusy, NotSynced, Renamed, is_event_path
from p2p.history.event import make_id
from p2p.history.log import LogBroken, LogWriteFailed
from p2p.history.paths import is_internal
from p2p.net.disk_guard import DISK_ERRNOS
from p2p.history.precedence import winner
from p2p.sync.plan import local_parents, paths_to_recheck
from p2p.watch.watcher import Coalescer
from p2p.logs import Digest, say

log = logging.getLogger("p2p.local")


class StoreFull(FileBusy):
    """The path's blocks could not be stored (the home disk is full): scan it again later."""


class LocalChanges:
    """The collaborators it is given: the folder ``root``, the ``history`` it
    appends to, the local ``state``, the ``scanner``, the ``ignore`` rules,
    the ``unsynced`` table, the ``disk`` guard (held while the home refuses
    writes), the ``threadpool`` scans run in, ``gates`` (the start-up scan's
    event, set here, and the user's ``Pauses``), ``folder_present`` and
    ``folder_missing`` (the marker check, and what to do when it fails), ``publish`` (send and show new events),
    ``broken`` (the history cannot reach the disk: stop), ``spawn``, and
    ``watch`` (the watcher's: the start-up scan watches each directory it
    lists, ``Scanner.changed``). The
    ``reconciler`` (re-check what a scan may have changed; archive large
    files) is set once it exists, as it needs ``rescan``."""

    def __init__(self, *, root, history, state, scanner, ignore, unsynced, disk, threadpool, gates, folder_present,
                 folder_missing, publish, broken, spawn, watch):
        self.root = root
        self.history = history
        self.state = state
        self.scanner = scanner
        self.ignore = ignore
        self.unsynced = unsynced
        self.disk = disk
        self.threadpool = threadpool
        self.scanned, self.pauses = gates
        self.folder_present = folder_present
        self.folder_missing = folder_missing
        self.publish = publish
        self.broken = broken
        self.spawn = spawn
        self.watch = watch
        self.activity = Digest(">", limits.ACTIVITY_LINES, limits.ACTIVITY_WINDOW)   # the "> create ..." lines
        self.reconciler = None
        self.queue: Queue = Queue()
        self.coalescer = Coalescer(self.rescan)
        self.reported: set = set()   # paths this loop listed in the unsynced table
        self.busy = 0                # paths of the batch being scanned and recorded now (p2p status)

    def pending(self) -> int:
        """Local changes seen and not recorded yet (0: the history has the disk);
        our own temporary files are not changes. A full rescan counts as one,
        whatever the size of the folder."""
        return self.coalescer.count(lambda path: not is_internal(path)) + sum(
            1 for batch, _ in self.queue.queue for path in batch if not is_internal(path)) + self.busy

    def rescan(self, paths, shallow=frozenset()) -> None:
        """Scan these paths (from the watcher, or after a write met a local
        edit); of those in ``shallow`` (directories whose attributes changed),
        not what is under them."""
        if self.disk.held:
            self.disk.defer(paths)   # scanned when the history can be written again
            return
        self.queue.put((list(paths), frozenset(shallow)))

    def run(self) -> None:
        while True:
            batches = [self.queue.get()]
            while not self.queue.empty():
                batches.append(self.queue.get_nowait())
            paths = [path for batch, _ in batches for path in batch]
            deep = {path for batch, shallow in batches for path in batch if path not in shallow}
            self.busy = sum(1 for path in paths if not is_internal(path))
            self._scan(paths, {path for _, shallow in batches for path in shallow} - deep)
            # a bug outside one path's handling: the supervisor restarts the
            # loop after a full rescan (Node.start), so the batch is not lost
            self.busy = 0
            if "" in paths and not self.scanned.is_set():
                self.scanned.set()
                self.spawn(self.reconciler.archive_unarchived)
                say(f"scanned the folder: {len(self.state)} paths recorded")   # (no walk of the tree)

    def _scan(self, paths, shallow=frozenset()) -> None:
        """One batch: expand (but the ``shallow`` directories), observe each
        path (several at once), record the changes."""
        if ".p2pignore" in paths:
            self.ignore.reload()
        scanned = self._expand(paths, shallow)
        # the start-up scan: Node.start marked what the history and the local state
        # disagree on; of the rest only what this scan changes needs a look
        startup = "" in paths and not self.scanned.is_set()
        changes, busy, renamed, deleted, changed = [], [], [], [], []
        settled = set()   # paths whose recorded event is now their only head: the disk is their winner
        flushed = time.monotonic()
        unchanged = {}   # path -> the event its entry names, for the unchanged paths a running scan found
        for path, (result, entry) in zip(scanned, self._observed(scanned)):
            if len(changes) >= limits.RECORD_EVERY or changes and time.monotonic() - flushed >= limits.RECORD_INTERVAL:
                settled |= self._record_each_path_apart(changes)   # events leave while the scan goes on
                changes, flushed = [], time.monotonic()
            if isinstance(result, NotSynced):
                self._not_synced(path, result.reason)
            elif isinstance(result, Exception) and not isinstance(result, (FileBusy, Renamed)):
                self._not_synced(path, f"unexpected error while scanning: {result!r}", result)
            else:
                if path in self.reported:   # gone, renamed or syncable now
                    self.reported.discard(path)
                    self.unsynced.clear(path)
                if isinstance(result, FileBusy):
                    busy.append(path)
                    if isinstance(result, StoreFull):
                        self.disk.hold(result.args[1])   # before the path comes back to ``rescan``
                elif isinstance(result, Renamed):
                    renamed.append(result.new)
                elif result is not None:
                    (deleted if result.deleted else changes).append(result)
                    changed.append(path)
                elif entry is not None and not startup:
                    unchanged[path] = entry.event_id
        if busy:
            self.coalescer.add(busy)   # still being written: look again when quiet
        if renamed:
            self.rescan(renamed)       # an NFD name now has its NFC form: scan that (and what is under it)
        settled |= self._record_each_path_apart(changes + deleted)   # deletes last, together: children first
        # a path whose recorded event is its only head holds its winner on disk, as recorded: the
        # reconciler has nothing to write there, nor (the path is there) at its parent, unless it has
        # business there of its own. At start-up Node.start marked what the history and the local state
        # disagree on, so of the rest only what this scan changed needs a look; a running scan's
        # unchanged paths (a file the reconciler just placed, seen by the watcher) are settled the same way
        settled |= self.history.sole_heads(unchanged)
        settled -= self.reconciler.busy(settled)
        looked_at = [p for p in (changed if startup else scanned) if p not in settled]
        self.reconciler.mark_dirty(paths_to_recheck(p for p in looked_at if is_event_path(p)))
        self.activity.flush()

    def _not_synced(self, path: str, reason: str, error: BaseException = None) -> None:
        """List ``path`` as not synced (one warning); an unexpected error's traceback is logged once."""
        if error is not None and path not in self.unsynced:
            log.error("while handling %r:", path, exc_info=(type(error), error, error.__traceback__))
        self.unsynced.report(path, reason, time.time())
        if path in self.unsynced:
            self.reported.add(path)

    def _record_each_path_apart(self, changes) -> set:
        """``_record``, but an unexpected error on one path does not lose the
        others: the events already made are sent, then each change is
        recorded alone and a change that fails again is listed as not synced.
        Returns the paths ``_record`` settled."""
        history = self.history
        me = history.device_id
        made = history.vv.get(me, 0)
        try:
            return self._record(changes)
        except Exception as exc:
            log.error("recording %d changes failed (%r): recording them one by one", len(changes), exc)
        stranded = [history.get(make_id(me, seq)) for seq in range(made + 1, history.vv.get(me, 0) + 1)]
        if stranded:
            history.sync()
            self.publish(stranded)
        settled = set()
        for change in changes:
            try:
                settled |= self._record([change])
            except Exception as exc:
                self._not_synced(change.path, f"unexpected error while recording: {exc!r}", exc)
        return settled

    def _observed(self, paths):
        """What ``_observe`` says of each path, with the path's entry (None: none),
        in order: ``limits.SCAN_CHUNK`` paths per pool job, their entries read in one query; at most
        ``limits.SCAN_THREADS`` jobs run or wait for the hub at once."""
        running = collections.deque()
        for start in range(0, len(paths), limits.SCAN_CHUNK):
            running.append(self.threadpool.spawn(self._observe_chunk, paths[start:start + limits.SCAN_CHUNK]))
            if len(running) >= limits.SCAN_THREADS:
                yield from running.popleft().get()
        while running:
            yield from running.popleft().get()

    def _observe_chunk(self, paths):
        try:
            entries = self.state.get_many(paths)
        except Exception as exc:   # each path is reported with it (the hub logs it once per path)
            return [(exc, None)] * len(paths)
        results, held, since = [], [], 0   # held: small files' blocks, stored together
        held_bytes = 0                     # (held's, counted as it grows: not summed again per path)
        for path in paths:
            before = len(held)
            results.append(self._observe(path, entries.get(path), held))
            for _, data in held[before:]:
                held_bytes += len(data)
            if held_bytes >= limits.PACK_WRITE_BYTES:
                results[since:] = self._store_held(paths[since:len(results)], results[since:], held)
                held, since, held_bytes = [], len(results), 0
        results[since:] = self._store_held(paths[since:], results[since:], held)
        return [(result, entries.get(path)) for path, result in zip(paths, results)]

    def _store_held(self, paths, results, held) -> list:
        """Store the blocks ``held`` for these paths (in a pool thread): their
        results, each file's change replaced by why it cannot be recorded yet
        if the store refused them (a full home disk: scanned again later)."""
        try:
            self.scanner.store.put_many(held, verified=True)   # hashed by the scanner just now
        except OSError as exc:
            return [(StoreFull(path, exc) if exc.errno in DISK_ERRNOS else
                     NotSynced(path, f"cannot store it: {exc.strerror or exc}"))
                    if isinstance(result, Change) and result.kind == "file" and not result.deleted else result
                    for path, result in zip(paths, results)]
        return results

    def _observe(self, path: str, entry, held: list):
        """Scan one path (in a pool thread; a small file's block into ``held``):
        its Change, None if unchanged, or the exception it raised (FileBusy,
        NotSynced, Renamed or an unexpected one: handled in the hub)."""
        started = time.monotonic()
        try:
            change = self.scanner.observe(path, entry, held)
            if change is not None and change.size > limits.ARCHIVE_LATER_MIN:
                log.debug("scanned %s (%s) in %.3fs", path, human_size(change.size), time.monotonic() - started)
            return change
        except FileBusy as busy:
            log.debug("%s changed while being scanned: later", path)
            return busy
        except FileNotFoundError:
            log.debug("%s vanished while being scanned: its deletion is reported next", path)
        except OSError as exc:
            if exc.errno in DISK_ERRNOS:   # the block store (in the home) has no room
                return StoreFull(path, exc)
            return NotSynced(path, f"cannot read it: {exc.strerror or exc}")
        except Exception as exc:  # NotSynced, Renamed, or a bug: the hub reports it
            return exc
        return None

    def _expand(self, paths, shallow=frozenset()):
        """Each reported path plus, for directories, everything under it (disk or
        record), but a ``shallow`` one recorded as the directory it still is:
        its content is as recorded, or reported path by path. One pool job
        for the batch (a burst of new directories is one hand-off, not one each)."""
        out = {}
        startup = not self.scanned.is_set()
        for path, found in self.threadpool.apply(self._expand_all, (list(dict.fromkeys(paths)), startup, shallow)):
            if isinstance(found, Exception):   # one path never stops the batch
                self._not_synced(path, f"unexpected error while listing: {found!r}", found)
                out.pop(path, None)
            else:
                out.update(dict.fromkeys(found))
        return sorted(out)

    def _expand_all(self, paths, startup: bool, shallow) -> list:
        """In a pool thread: (path, what it expands to, or the exception that raised) for each path."""
        entries = self.state.get_many(paths)   # one query for the batch
        expanded = []
        for path in paths:
            try:
                expanded.append((path, self._expand_one(path, entries.get(path), startup, path in shallow)))
            except Exception as exc:
                expanded.append((path, exc))
        return expanded

    def _expand_one(self, path: str, entry, startup: bool, shallow: bool = False) -> list:
        if path == "" and startup:   # the start-up scan: what may differ from the record
            return list(self.scanner.changed(remove_temporaries=True, watch=self.watch))
        full = os.path.join(self.root, path)
        on_disk_dir = path == "" or os.path.isdir(full) and not os.path.islink(full)
        if shallow and on_disk_dir and path and entry is not None and entry.kind == "dir":
            return [path]
        found = list(self.scanner.walk(path)) if on_disk_dir else [path] if path else []
        if on_disk_dir or (entry is not None and entry.kind == "dir"):
            found += self.state.under(path)  # children that may be gone
        return found

    def _record(self, changes) -> set:
        """Turn disk changes into events: renames paired by content, deletes children first.
        Nothing is recorded while the folder's marker is missing: a moved or
        unmounted folder would otherwise read as every file deleted.
        Returns the paths it settled: created or updated (or found recorded
        already) with an event that is now the path's only head, and the
        local state written for it, so the disk holds the path's winner and
        no write can be due there (none once anything of the batch failed)."""
        if changes and not self.folder_present():
            self.folder_missing()   # rescans the whole folder once it is back
            return set()
        if changes and self.pauses.folder:   # paused by the user: resuming rescans the folder
            return set()
        if changes and self.disk.held:   # scanned again once the history can be written
            self.disk.defer(c.path for c in changes)
            return set()
        entries = dict.fromkeys(c.path for c in changes)   # path -> its entry (None: none), one query
        entries.update(self.state.get_many(list(entries)))
        batch = _Batch(self.history.heads_many(entries))   # the paths' heads, one query
        pending = {}   # path -> entry (None: forget it): this batch's local state, one transaction
        deleted = {c.path: c for c in changes if c.deleted}
        created = [c for c in changes if not c.deleted]
        by_hash = {}
        for c in deleted.values():
            entry = entries[c.path]
            if entry is not None and entry.kind == "file":
                by_hash.setdefault(entry.hash, []).append(c)
        elsewhere = self.state.with_hashes(   # recorded files with a new file's content, one query
            c.hash for c in created if c.kind == "file" and c.size and entries[c.path] is None)
        try:
            try:
                for c in created:
                    moved_from = None
                    if c.kind == "file" and c.size and entries[c.path] is None:
                        source = by_hash[c.hash].pop(0) if by_hash.get(c.hash) else self._vanished_with(
                            elsewhere.get(c.hash, ()), pending)
                        if source is not None:
                            deleted.pop(source.path, None)
                            self._local_event(source, self._entry(source.path, entries), pending, batch,
                                              moved_to=c.path)
                            moved_from = source.path
                    self._local_event(c, entries[c.path], pending, batch, moved_from=moved_from)
                for c in sorted(deleted.values(), key=lambda c: c.path.count("/"), reverse=True):
                    self._local_event(c, entries[c.path], pending, batch)
                self._make(batch, pending)
                self.state.set_many(pending.items())   # only once their events are written
                settled = batch.settled
            except LogBroken:
                raise
            except OSError as exc:   # the history, or the local state's database, refused a write
                if not isinstance(exc, LogWriteFailed) and exc.errno not in DISK_ERRNOS:
                    raise
                self.disk.hold(exc, [c.path for c in changes])   # the rest are found again later
                settled = set()
            new_events = batch.events
            if new_events:
                self.history.sync()  # one fsync for the batch, before any of it leaves this machine
        except LogBroken as exc:   # nothing of this batch may leave this machine
            self.broken(exc)
            return set()
        if new_events:
            self.publish(new_events)
            for e in new_events:
                if e.moved_to:   # the first half of a rename: said with its second half
                    continue
                if e.moved_from:
                    self.activity.add("rename", f"> rename {e.moved_from} -> {e.path}")
                else:
                    self.activity.add(e.type, f"> {e.type} {e.path}")
        return settled

    def _vanished_with(self, recorded, pending: dict):
        """Of the ``recorded`` files with a new file's content, one gone from disk
        (and not forgotten by this batch, ``pending``): the source of a move
        whose two halves reached us in different batches (a moved directory)."""
        for path in recorded:
            if path not in pending and not os.path.lexists(self.root / path):
                return Change(path, "file", deleted=True)
        return None

    def _entry(self, path: str, entries: dict):
        """``path``'s entry: read with the batch (``entries``), or now (a move's source from another batch)."""
        return entries[path] if path in entries else self.state.get(path)

    def _local_event(self, change, entry, pending: dict, batch: _Batch, moved_from=None, moved_to=None) -> None:
        """Plan the event ``change`` makes in ``batch`` (none if the history has
        it already) given the path's local ``entry`` and its heads as the
        batch read them; what the local state must then hold goes into
        ``pending`` (``_make``, once the event exists), written by the caller
        once the events are."""
        path = change.path
        if path in batch.paths:   # planned already (the disk changed under the batch): its heads change first
            self._make(batch, pending)
        batch.settled.discard(path)   # (what this change makes of it decides)
        heads = batch.heads.pop(path) if path in batch.heads else self.history.heads(path)
        current = winner(heads)
        live = current is not None and current.type != "delete"
        if change.deleted:
            pending[path] = None
            if live and entry is not None:
                batch.plan(dict(type="delete", kind=entry.kind, path=path, time=time.time(), moved_to=moved_to,
                                parents=local_parents(entry.event_id, True, heads)), None)
            return
        if live and current.kind == change.kind and current.hash == change.hash and current.mode == change.mode \
                and (change.kind == "dir" or current.mtime == change.mtime):
            pending[path] = change.entry(current.id)   # already what the history says
            if len(heads) == 1:
                batch.settled.add(path)
            return
        parents = local_parents(entry.event_id if entry else None, entry is not None, heads)
        batch.plan(dict(type="update" if live and entry is not None else "create", kind=change.kind, path=path,
                        size=change.size, mode=change.mode, mtime=change.mtime, hash=change.hash,
                        blocks=change.blocks, time=time.time(), moved_from=moved_from, parents=parents), change,
                   settles=set(parents) == {h.id for h in heads})   # it supersedes every head: the only one made

    def _make(self, batch: _Batch, pending: dict) -> None:
        """Make the events ``batch`` planned (one log write; fsynced by the
        caller's ``sync``); each created or updated path's entry goes into
        ``pending``, a large file's blocks to be archived."""
        events = self.history.make_local_many([spec for spec, _, _ in batch.planned], durable=False)
        for event, (_, change, settles) in zip(events, batch.planned):
            if settles:
                batch.settled.add(event.path)
            if change is not None:
                pending[event.path] = change.entry(event.id)
                if not change.stored:
                    self.reconciler.archive_later(event.path, change.blocks, pending[event.path])   # recorded after the event
        batch.events += events
        batch.planned, batch.paths = [], set()


class _Batch:
    """One ``_record`` call's events: the heads of its paths as read at its
    start (each taken once), the events planned and not made yet (with the
    change whose entry waits for its id, and whether the event will be the
    path's only head), those made, and the paths settled (``_record``)."""

    def __init__(self, heads: dict):
        self.heads = heads
        self.planned: list = []
        self.paths: set = set()
        self.events: list = []
        self.settled: set = set()

    def plan(self, spec: dict, change, settles: bool = False) -> None:
        self.planned.append((spec, change, settles))
        self.paths.add(spec["path"])
