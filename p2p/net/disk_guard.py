"""When the home disk refuses a history write: stop making events, say why
once, probe, and catch up when it has room again.

A write that fails for lack of room or with an I/O error (``LogWriteFailed``
from the log or the sequence mark: the history is exactly as it was; or a
block that cannot be stored while a change is scanned) *holds* the peer:
local changes are not recorded but their paths are remembered (the folder
still holds the changes), remote events are not merged (their senders still
hold them), and one line says why. It keeps running: sessions, serving and
status go on. Every ``limits.DISK_PROBE_INTERVAL`` a probe file of
``limits.DISK_PROBE_BYTES`` is written and fsynced beside the history; once
that succeeds, the events the causal buffer held are appended, every
remembered path is scanned again (each change becomes exactly one event),
and every peer gets our Summary, so it sends what we did not take.

A failed fsync of the log is not held but fatal (``LogBroken``, see
p2p/history/log.py): the node stops with a non-zero exit.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Iterable, Optional

import gevent

from p2p import limits

log = logging.getLogger("p2p.disk")

# errors of the disk that holds the home, not of the file being scanned
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
PROBE_NAME = ".disk-probe"


def probe(directory: Path) -> Optional[OSError]:
    """Write, fsync and remove a probe file in ``directory``: None if the disk took it."""
    path = Path(directory) / PROBE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = memoryview(bytes(limits.DISK_PROBE_BYTES))
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return None
    except OSError as exc:
        return exc
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


class DiskGuard:
    """The node's held state: ``reason`` is None while the history can be written.

    Its collaborators: the ``home`` it probes, the ``threadpool`` probes run
    in, ``spawn`` (a supervised greenlet), and once the disk takes writes
    again: ``take_held_events`` (append what the causal buffer took back;
    False if that failed again), ``rescan`` (the paths changed meanwhile) and
    ``ask_peers`` (send every peer our version vector, so it sends what we
    lack)."""

    def __init__(self, *, home, threadpool, spawn, take_held_events, rescan, ask_peers):
        self.home = home
        self.threadpool = threadpool
        self.spawn = spawn
        self.take_held_events = take_held_events
        self.rescan = rescan
        self.ask_peers = ask_peers
        self.reason: Optional[str] = None
        self._paths: set = set()

    @property
    def held(self) -> bool:
        return self.reason is not None

    def hold(self, error: OSError, paths: Iterable[str] = ()) -> None:
        """A history write failed: remember ``paths`` to record later; the first time, say why and start probing."""
        self.defer(paths)
        if self.reason is not None:
            return
        self.reason = error.strerror or str(error)
        log.error("cannot write the history in %s (%s). Not recording changes nor taking peers' events until "
                  "it can; trying again every %gs", self.home, self.reason, limits.DISK_PROBE_INTERVAL)
        self.spawn(self._probe_loop)

    def defer(self, paths: Iterable[str]) -> None:
        """Scan these paths once the history can be written again."""
        self._paths.update(paths)
        if len(self._paths) > limits.MAX_DEFERRED_PATHS:
            self._paths = {""}   # too many to list: rescan the whole folder

    def _probe_loop(self) -> None:
        while self.reason is not None:
            gevent.sleep(limits.DISK_PROBE_INTERVAL)
            error = self.threadpool.apply(probe, (self.home / ".p2p",))
            if error is None:
                self._resume()
            else:
                log.debug("the disk still refuses writes: %s", error)

    def _resume(self) -> None:
        paths, self._paths = sorted(self._paths), set()
        self.reason = None
        log.warning("the history in %s can be written again: recording %d changed paths and asking peers "
                    "for their events", self.home, len(paths))
        if not self.take_held_events():
            return   # failed again: held once more
        if paths:
            self.rescan(paths)
        self.ask_peers()
