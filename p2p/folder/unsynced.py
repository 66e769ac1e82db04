"""Paths this peer cannot sync right now, each with its reason.

A path that cannot be synced (a name other platforms cannot hold, a FIFO or a
symbolic link where a peer's file should go, content no connected peer has)
is skipped and recorded here: the warning is logged once per path and reason,
never once per attempt, and ``p2p status`` lists every entry as "not synced",
so a bad path is never a reason to stop syncing the rest, nor hidden.

Pure bookkeeping: no I/O, no gevent; time is passed in. Only the hub uses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

from p2p import limits
from p2p.history.paths import shown


@dataclass
class Problem:
    path: str
    reason: str
    since: float
    retry_at: float          # when it is worth trying again (back-off)
    attempts: int = 1


class Unsynced:
    """path -> Problem, bounded (``limits.MAX_UNSYNCED`` paths are listed; the
    rest are counted)."""

    def __init__(self, logger: Optional[logging.Logger] = None):
        self._log = logger or logging.getLogger("p2p.unsynced")
        self._problems: Dict[str, Problem] = {}
        self.overflow = 0    # problems not listed once the table is full

    def report(self, path: str, reason: str, now: float) -> Problem:
        """Record that ``path`` cannot be synced for ``reason``; warn only the
        first time (or when the reason changes). Each repeat doubles the
        back-off before the next attempt, up to ``limits.UNSYNCED_RETRY_MAX``."""
        problem = self._problems.get(path)
        if problem is not None and problem.reason == reason:
            problem.attempts += 1
            delay = min(limits.UNSYNCED_RETRY_MIN * 2 ** (problem.attempts - 1), limits.UNSYNCED_RETRY_MAX)
            problem.retry_at = now + delay
            return problem
        if problem is None and len(self._problems) >= limits.MAX_UNSYNCED:
            self.overflow += 1
            return Problem(path, reason, now, now + limits.UNSYNCED_RETRY_MAX)
        self._log.warning("not syncing %r: %s", path, reason)
        problem = self._problems[path] = Problem(path, reason, now, now + limits.UNSYNCED_RETRY_MIN)
        return problem

    def clear(self, path: str) -> bool:
        """The path synced (or vanished): forget its problem. True if it had one."""
        return self._problems.pop(path, None) is not None

    def get(self, path: str) -> Optional[Problem]:
        return self._problems.get(path)

    def __contains__(self, path: str) -> bool:
        return path in self._problems

    def __len__(self) -> int:
        return len(self._problems) + self.overflow

    def paths(self, reason: str) -> List[str]:
        """The listed paths not synced for ``reason``."""
        return [p.path for p in self._problems.values() if p.reason == reason]

    def listing(self) -> List[dict]:
        """For `p2p status --json`: every listed problem, by path (as valid
        UTF-8 text: a name that is not UTF-8 shows its bytes as \\xNN)."""
        return [{"path": shown(p.path), "reason": shown(p.reason), "since": p.since, "attempts": p.attempts}
                for p in sorted(self._problems.values(), key=lambda p: p.path)]
