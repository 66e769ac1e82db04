"""Numbered notifications for live pages: ``/rest/events?since=N``.

The node publishes one item when something a page shows changes (new events
in the history, a peer connected or gone, a pause); each gets the next
number. A page asks for the items after the last number it saw and then
re-reads what they concern through the other endpoints, so an item carries a
hint, not the state. Only the last ``limits.GUI_FEED_KEPT`` items are kept:
a page further behind, or one that saw numbers of an earlier run, is told to
reload (``reset``).

Pure: no clock reads (time is passed in), no gevent; ``listen`` registers a
callback (the server wakes its waiting requests with it).
"""

from __future__ import annotations

from collections import deque
from typing import Callable, List

from p2p import limits


class Feed:
    def __init__(self, kept: int = limits.GUI_FEED_KEPT):
        self._items: deque = deque(maxlen=kept)
        self.last = 0
        self._listeners: List[Callable[[], None]] = []

    def publish(self, kind: str, data: dict, now: float) -> int:
        self.last += 1
        self._items.append({"id": self.last, "type": kind, "time": now, "data": data})
        for listener in list(self._listeners):
            listener()
        return self.last

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def since(self, seen: int) -> dict:
        """The items after number ``seen``; ``reset`` when some of them are no
        longer kept or ``seen`` is from another run (then reload everything)."""
        first = self._items[0]["id"] if self._items else self.last + 1
        reset = seen > self.last or seen < first - 1
        events = [] if reset else [item for item in self._items if item["id"] > seen]
        return {"events": events, "last": self.last, "reset": reset}
