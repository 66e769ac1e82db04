"""Supervision of the node's greenlets: nothing dies silently.

Every greenlet the node owns is started here. One that raises an unexpected
exception is logged once, with its name and traceback, and run again after a
back-off, so a bug hit by one odd input costs a moment, not the rest of the
session. One that keeps failing (``limits.MAX_RESTARTS`` times within
``limits.RESTART_WINDOW`` seconds) is fatal: ``on_fatal(reason)`` stops the
peer, which exits non-zero and says why, rather than running on without
that part. A greenlet that returns normally is done (a dialer whose peer
stopped announcing, an archive job that finished).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable, Dict, Optional

import gevent
from gevent.pool import Group

from p2p import limits

log = logging.getLogger("p2p.node")


class Supervisor:
    def __init__(self, on_fatal: Callable[[str], None], clock=time.monotonic):
        self.group = Group()
        self._on_fatal = on_fatal
        self._clock = clock
        self._failures: Dict[str, deque] = {}

    def spawn(self, fn, *args, recover: Optional[Callable[[], None]] = None) -> gevent.Greenlet:
        """Run ``fn(*args)`` in a greenlet of the group, supervised. ``recover``
        runs before a restart: it re-queues the work the crash may have dropped."""
        label = getattr(fn, "__qualname__", None) or repr(fn)
        return self.group.spawn(self._supervise, label, fn, args, recover)

    def _supervise(self, label: str, fn, args, recover) -> None:
        while True:
            try:
                fn(*args)
                return
            except gevent.GreenletExit:
                raise
            except Exception as exc:   # a bug: say it once, with its context, then recover or stop
                if self._record_failure(label):
                    log.critical("%s failed %d times within %.0fs; stopping the peer", label,
                                 limits.MAX_RESTARTS, limits.RESTART_WINDOW, exc_info=True)
                    self._on_fatal(f"{label} keeps failing: {type(exc).__name__}: {exc}")
                    return
                log.error("%s crashed; restarting it in %.0fs", label, limits.RESTART_DELAY, exc_info=True)
            gevent.sleep(limits.RESTART_DELAY)
            if recover is not None:
                recover()

    def _record_failure(self, label: str) -> bool:
        """Count a failure; True once there were too many recently."""
        now = self._clock()
        recent = self._failures.setdefault(label, deque())
        recent.append(now)
        while recent and now - recent[0] > limits.RESTART_WINDOW:
            recent.popleft()
        return len(recent) >= limits.MAX_RESTARTS

    def kill(self, timeout: float) -> None:
        self.group.kill(block=True, timeout=timeout)
