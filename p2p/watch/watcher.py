"""watchdog at the edge: its observer runs in a native OS thread and hands the
changed paths to the gevent hub thread-safely, where bursts are coalesced.

The observer thread only appends to a deque and wakes the hub through a
loop ``async`` watcher (the thread-safe way into a gevent loop); it never
touches a gevent object otherwise. In the hub, ``Coalescer`` waits until a
path has been quiet for ``limits.COALESCE_DELAY`` (so a file written in 100
pieces is scanned once), but no longer than ``limits.COALESCE_MAX_DELAY``.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import Callable, Dict, Iterable

import gevent
from gevent.event import Event
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from p2p import limits


class Coalescer:
    """Collects changed paths in the hub; calls ``flush(paths)`` for quiet ones."""

    def __init__(self, flush: Callable[[list], None], clock=time.monotonic):
        self._flush = flush
        self._clock = clock
        self._first: Dict[str, float] = {}
        self._last: Dict[str, float] = {}
        self._wake = Event()

    def add(self, paths: Iterable[str]) -> None:
        now = self._clock()
        for path in paths:
            self._first.setdefault(path, now)
            self._last[path] = now
        self._wake.set()

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
                    self._flush(sorted(ready))


class _Handler(FileSystemEventHandler):
    def __init__(self, root: str, inbox: "ThreadInbox"):
        self.root = root
        self.inbox = inbox

    def _rel(self, path) -> str:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        rel = os.path.relpath(path, self.root)
        return "" if rel == "." else rel.replace(os.sep, "/")

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            return  # a child changed: the child's own event says which
        paths = [self._rel(event.src_path)]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(self._rel(dest))
        self.inbox.put([p for p in paths if p and not p.startswith("..")])


class ThreadInbox:
    """A deque filled from any thread, drained in the hub via a loop async watcher."""

    def __init__(self, deliver: Callable[[list], None]):
        self._items = collections.deque()
        self._deliver = deliver
        self._async = gevent.get_hub().loop.async_()
        self._async.start(self._drain)

    def put(self, paths: list) -> None:  # any thread
        self._items.append(paths)
        self._async.send()

    def _drain(self) -> None:  # hub
        batch = []
        while self._items:
            batch.extend(self._items.popleft())
        if batch:
            self._deliver(batch)

    def close(self) -> None:
        self._async.stop()
        self._async.close()


class FolderWatcher:
    """Starts a watchdog observer on ``root`` feeding ``coalescer``."""

    def __init__(self, root: Path, coalescer: Coalescer):
        self.inbox = ThreadInbox(coalescer.add)
        self.observer = Observer()
        self.observer.daemon = True
        self.observer.schedule(_Handler(str(root), self.inbox), str(root), recursive=True)

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.inbox.close()
