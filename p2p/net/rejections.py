"""The events one session sent that were rejected: what to log, and when to
give up on the session.

A peer can send thousands of bad events a second; one log line each would
flood the log. Rejections are grouped by kind (the reason without the values
it quotes: paths, ids, numbers; at most ``limits.MAX_REJECT_KINDS`` kinds,
then one for all others): the first of a kind is said at once, the
next ones of that kind are counted and said with their count in the first
line after ``limits.REJECT_LOG_INTERVAL`` (or when the session ends). A
session that sends more than ``limits.MAX_INVALID_EVENTS`` invalid events
within ``limits.INVALID_WINDOW`` is dropped: an honest peer sends none.
Events refused by this peer's own bounds (a full causal buffer) are logged
the same way but never count against the sender.

Pure bookkeeping: no I/O, time is passed in. The node keeps one per session.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from p2p import limits

_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


def reason_kind(reason: str) -> str:
    """The reason without the values it quotes: what lines are grouped by."""
    return _VALUES.sub("_", reason)


class Rejections:
    def __init__(self):
        self._kinds: Dict[str, Tuple[float, int, str]] = {}   # kind -> (last line's time, unsaid since, last text)
        self._invalid: Tuple[float, int] = (0.0, 0)            # (window start, invalid events in it)

    def note(self, reason: str, text: str, invalid: bool, now: float) -> Optional[str]:
        """Count one rejected event (``text``: its line); the line to log now, or None."""
        if invalid:
            start, count = self._invalid
            self._invalid = (start, count + 1) if now - start < limits.INVALID_WINDOW else (now, 1)
        kind = reason_kind(reason)
        if kind not in self._kinds and len(self._kinds) >= limits.MAX_REJECT_KINDS:
            kind = ""   # a sender that invents reasons gets one more kind, not a line per reason
        said, unsaid, _ = self._kinds.get(kind, (None, 0, ""))
        if said is not None and now - said < limits.REJECT_LOG_INTERVAL:
            self._kinds[kind] = (said, unsaid + 1, text)
            return None
        self._kinds[kind] = (now, 0, text)
        if unsaid:
            text += f" (and {unsaid} more like it since the last such line)"
        return text

    def too_many(self) -> bool:
        """The session sent more invalid events than an honest peer ever would."""
        return self._invalid[1] > limits.MAX_INVALID_EVENTS

    @property
    def invalid_count(self) -> int:
        return self._invalid[1]

    def unsaid(self) -> List[str]:
        """At the end of the session: a line for each kind with rejections not said yet."""
        return [f"{unsaid} more like: {text}" for _, unsaid, text in self._kinds.values() if unsaid]
