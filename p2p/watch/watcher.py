"""watchdog at the edge: its observer runs in native OS threads and hands the
changed paths to the gevent hub thread-safely, where bursts are coalesced.

watchdog's emitter thread (not its observer's dispatching thread: one
hand-off less per event, ``_Emitter``) only appends to a deque and wakes
the hub through a loop ``async`` watcher (the thread-safe way into a gevent
loop); it never touches a gevent object otherwise. p2p's own files are not
changes and stop there (``_Handler``). In the hub, ``Coalescer`` waits until a
path has been quiet for ``limits.COALESCE_DELAY`` (so a file written in 100
pieces is scanned once), but no longer than ``limits.COALESCE_MAX_DELAY``.

Only what changes content or names is watched (``CHANGES``): reading or
listing the folder, as every scan and walk does, queues no inotify event.
When the kernel's inotify queue overflows, events were dropped: watchdog
(7.1: ``on_queue_overflow``) only re-adds its watches, so we also ask for a
rescan of the whole folder (path ``""``) through the same thread-safe inbox.
This uses watchdog's inotify observer (Linux) directly, to hook the overflow.

watchdog watches a tree by walking it (``os.walk``, every directory listed)
before the first event can be read. At start the start-up scan lists every
directory anyway, so ``FolderWatcher(..., walk=False)`` watches only the
folder's top at ``start()`` and each directory as the scan comes to it
(``watch``, before it is listed: a change after its listing is reported);
a subtree the scan does not enter is walked to watch it, as watchdog would.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable

import gevent
from gevent.event import Event
from watchdog.events import (DirAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileAttribEvent,
                             FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
                             FileSystemEvent, FileSystemEventHandler)
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup

from p2p import limits
from p2p.history.paths import is_internal

log = logging.getLogger("p2p.watch")

# The events that change content or names. watchdog turns this filter into the
# inotify mask CREATE|DELETE|MODIFY|ATTRIB|CLOSE_WRITE|MOVED_FROM|MOVED_TO
# (+ DELETE_SELF, always): never OPEN, ACCESS or CLOSE_NOWRITE, which every
# read and every directory walk (ours, or watchdog's re-add walk after an
# overflow) would otherwise pour into the kernel queue. ATTRIB is a chmod (or
# touch); no event class here asks for IN_MOVE_SELF, which watchdog ignores.
CHANGES = (FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent, FileModifiedEvent,
           FileClosedEvent, FileMovedEvent, DirMovedEvent, FileAttribEvent, DirAttribEvent)


class Coalescer:
    """Collects changed paths in the hub; calls ``flush(paths, shallow)`` for
    quiet ones, ``shallow`` those of them reported only as a directory whose
    attributes changed (its content did not: ``tar xf`` sets each
    directory's time once it has filled it, and a scan need not list what
    is under it once more)."""

    def __init__(self, flush: Callable[[list, set], None], clock=time.monotonic):
        self._flush = flush
        self._clock = clock
        self._first: Dict[str, float] = {}
        self._last: Dict[str, float] = {}
        self._shallow: set = set()
        self._wake = Event()

    def add(self, paths: Iterable[str], shallow: bool = False) -> None:
        now = self._clock()
        for path in paths:
            if not shallow:
                self._shallow.discard(path)
            elif path not in self._last:
                self._shallow.add(path)
            self._first.setdefault(path, now)
            self._last[path] = now
        self._wake.set()

    def count(self, keep: Callable[[str], bool]) -> int:
        """Paths changed and not handed on yet, of those ``keep`` accepts."""
        return sum(1 for path in self._last if keep(path))

    def due(self, now: float) -> list:
        ready = [p for p, last in self._last.items()
                 if now - last >= limits.COALESCE_DELAY or now - self._first[p] >= limits.COALESCE_MAX_DELAY]
        for p in ready:
            del self._last[p], self._first[p]
        return ready

    def run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._last:
                gevent.sleep(limits.COALESCE_DELAY / 2)
                ready = self.due(self._clock())
                if ready:
                    shallow = self._shallow.intersection(ready)
                    self._shallow -= shallow
                    self._flush(sorted(ready), shallow)


class _Handler(FileSystemEventHandler):
    """An event's paths in the folder, to the inbox; p2p's own files (its
    temporary files, ``.p2p/`` when the home is the folder) are not changes
    and stop here: every received file is written to a temporary name
    first, whose events would otherwise each cost the hub a scan that finds
    nothing."""

    def __init__(self, root: str, inbox: "ThreadInbox"):
        self._prefix = os.path.join(root, "")   # with its final separator
        self.inbox = inbox

    def _rel(self, path) -> str:
        """``path`` in the folder ("" for the folder itself: not a change)."""
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        return path[len(self._prefix):] if path.startswith(self._prefix) else ""

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [self._rel(event.src_path)]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(self._rel(dest))
        paths = [p for p in paths if p and not is_internal(p)]
        if paths:
            self.inbox.put(paths, shallow=isinstance(event, DirAttribEvent))


class ThreadInbox:
    """A deque filled from any thread, drained in the hub via a loop async
    watcher: ``deliver(paths, shallow)``, as ``Coalescer.add``."""

    def __init__(self, deliver: Callable[[list, bool], None]):
        self._items = collections.deque()
        self._deliver = deliver
        self._async = gevent.get_hub().loop.async_()
        self._async.start(self._drain)

    def put(self, paths: list, shallow: bool = False) -> None:  # any thread
        self._items.append((paths, shallow))
        self._async.send()

    def _drain(self) -> None:  # hub (in order: a shallow report after a deep one leaves the path deep)
        run, flag = [], False   # consecutive reports alike go in one delivery, not one per event
        while self._items:
            paths, shallow = self._items.popleft()
            if run and shallow != flag:
                self._deliver(run, flag)
                run = []
            run.extend(paths)
            flag = shallow
        if run:
            self._deliver(run, flag)

    def close(self) -> None:
        self._async.stop()
        self._async.close()


@dataclass
class _WatchGroup(InotifyWatchGroup):
    """watchdog's inotify watches of the folder, which also say when events
    were lost; with ``walk`` False, only the top is watched at first, and
    ``watch`` adds the rest."""
    on_lost: Callable[[], None] = lambda: None
    walk: bool = True

    def _activate(self) -> None:
        if self.walk:
            super()._activate()
            return
        with self._lock:
            if not self.is_active:
                self._add_callback(self.path)
                self._is_active = True

    def watch(self, path: bytes, recursive: bool) -> None:  # any thread
        """Watch ``path`` (and with ``recursive`` every directory under it, not
        following links), but what is watched already (a second watch of a
        path is a RuntimeWarning of watchdog's)."""
        with self._lock:
            if not self.is_active:
                return
            self._watch_new(path)
            if recursive:
                for top, dirnames, _ in os.walk(path):
                    for name in dirnames:
                        full = os.path.join(top, name)
                        if not os.path.islink(full):
                            self._watch_new(full)

    def _watch_new(self, path: bytes) -> None:
        if path not in self._active_callbacks_by_path:
            self._add_callback(path)

    def on_queue_overflow(self) -> None:  # watchdog's inotify thread
        super().on_queue_overflow()       # watchdog re-adds its watches, and reports nothing
        if self.is_active:
            self.on_lost()


class _Emitter(InotifyEmitter):
    """watchdog's inotify emitter, with ``_WatchGroup`` as its watches, which
    hands each event it makes to ``deliver`` (the handler) in its own thread,
    instead of to the observer's queue, whose thread would then dispatch
    it: one thread hand-off less per event (a ``tar xf`` of 3,000 files
    makes about 15,000)."""

    def __init__(self, event_queue, watch, *, on_lost: Callable[[], None], walk: bool,
                 deliver: Callable[[FileSystemEvent], None], **kwargs):
        super().__init__(event_queue, watch, **kwargs)
        self._on_lost = on_lost
        self._walk = walk
        self._deliver = deliver

    def queue_event(self, event: FileSystemEvent) -> None:  # watchdog's emitter thread
        if isinstance(event, CHANGES):
            self._deliver(event)

    def on_thread_start(self) -> None:  # as InotifyEmitter's, with our watch group
        self._inotify = _WatchGroup(self._inotify_fd, os.fsencode(self.watch.path),
                                    event_mask=self.get_event_mask_from_filter(),
                                    is_recursive=self.watch.is_recursive,
                                    follow_symlink=self.watch.follow_symlink, on_lost=self._on_lost,
                                    walk=self._walk)


class FolderWatcher:
    """Starts a watchdog observer on ``root`` feeding ``coalescer``: the whole
    tree watched at ``start()``, or (``walk`` False) its top only, the rest
    through ``watch`` (see the module's docstring)."""

    def __init__(self, root: Path, coalescer: Coalescer, walk: bool = True):
        self.inbox = ThreadInbox(coalescer.add)
        self.observer = InotifyObserver()
        handler = _Handler(str(root), self.inbox)
        self.observer._emitter_class = _Emitter      # watchdog's observer, with our emitter
        self.observer._emitter_kwargs.update(on_lost=self._lost, walk=walk, deliver=handler.on_any_event)
        self.observer.daemon = True
        self.observer.schedule(handler, str(root), recursive=True, event_filter=list(CHANGES))

    def _lost(self) -> None:  # watchdog's inotify thread
        log.warning("file-system events were lost (inotify queue overflow): rescanning the folder")
        self.inbox.put([""])

    def start(self) -> None:
        self.observer.start()

    def watch(self, directory: str, recursive: bool = False) -> None:
        """Watch ``directory`` (an absolute path) too; with ``recursive``, what
        is under it (not following links). Any thread; a directory that
        cannot be watched is left out, as watchdog's walk leaves it out."""
        for emitter in self.observer.emitters:
            group = emitter._inotify
            if group is not None:   # (None once stopped)
                group.watch(os.fsencode(directory), recursive)

    def stop(self) -> None:
        self.observer.stop()
        self.inbox.close()
