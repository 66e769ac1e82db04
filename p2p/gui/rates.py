"""Transfer rates from byte counters: bytes per second, per key (a peer, or
this device), measured between samples at least ``limits.GUI_RATE_WINDOW``
apart, so pages that poll often, or two pages at once, see steady numbers.

Pure: time is passed in.
"""

from __future__ import annotations

from typing import Dict, Tuple

from p2p import limits


class Rates:
    def __init__(self, window: float = limits.GUI_RATE_WINDOW):
        self.window = window
        self._last: Dict[str, Tuple[float, int, int]] = {}    # key -> (time, sent, received)
        self._rates: Dict[str, Tuple[float, float]] = {}

    def sample(self, key: str, sent: int, received: int, now: float) -> Tuple[float, float]:
        """(upload, download) in bytes per second for ``key``, given its counters now."""
        last = self._last.get(key)
        if last is None or sent < last[1] or received < last[2]:   # new, or a new channel's counters
            self._last[key] = (now, sent, received)
            self._rates[key] = (0.0, 0.0)
        elif now - last[0] >= self.window:
            elapsed = now - last[0]
            self._rates[key] = ((sent - last[1]) / elapsed, (received - last[2]) / elapsed)
            self._last[key] = (now, sent, received)
        return self._rates[key]

    def forget_others(self, keys) -> None:
        """Drop the keys not in ``keys`` (peers forgotten by the registry)."""
        keep = set(keys)
        for key in [k for k in self._last if k not in keep]:
            del self._last[key]
            self._rates.pop(key, None)
