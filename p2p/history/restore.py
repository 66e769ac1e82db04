"""The folder as it was at a moment: which events were current then.

Pure given the events: ``state_of`` folds events (in log order, which is a
causal order) into path -> winning event; ``state_at`` picks the events of a
moment from a History. A moment is an ISO-8601 time (naive = local time, 'Z'
or an offset honoured; the events whose origin wall clock ``time`` is not
later), or an event id (the log prefix up to and including it).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Dict, Iterable, List, Tuple, Union

from p2p.history.event import Event
from p2p.sync.merge import live_tree

_EVENT_ID = re.compile(r"[A-Z2-7]{32}:[1-9][0-9]*\Z")


class BadMoment(ValueError):
    """An --at value that is neither an ISO-8601 time nor a known event id."""


def parse_moment(at: str) -> Union[float, str]:
    """An event id (returned as is) or an ISO-8601 time (returned as unix seconds)."""
    text = at.strip()
    if _EVENT_ID.match(text):
        return text
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise BadMoment(f"{at!r} is neither an ISO-8601 time (2026-11-25T12:00:00) "
                        "nor an event id (ORIGIN:SEQ)") from None
    return moment.timestamp()  # a naive time is local time


def state_of(events: Iterable[Event]) -> Dict[str, Event]:
    """path -> winning event, for the paths whose winner is not a delete.

    ``events`` must come parents first (log order); an event whose parents are
    absent from ``events`` is simply a head.
    """
    heads: Dict[str, List[Event]] = {}
    for event in events:
        current = heads.get(event.path)
        if current is None:
            heads[event.path] = [event]
        else:
            parents = set(event.parents)
            current[:] = [head for head in current if head.id not in parents]
            current.append(event)
    return live_tree(heads.items())


def events_at(history, at: str) -> Iterable[Event]:
    """The events of ``history`` that make up the folder at moment ``at``, in log order."""
    moment = parse_moment(at)
    if isinstance(moment, float):
        return (event for event in history.events() if event.time <= moment)
    if not history.knows(moment):
        raise BadMoment(f"no event {moment} in the history")
    return _prefix_through(history.events(), moment)


def _prefix_through(events: Iterable[Event], last_id: str) -> Iterable[Event]:
    for event in events:
        yield event
        if event.id == last_id:
            return


def state_at(history, at: str) -> Dict[str, Event]:
    """path -> Event of every file, directory and symlink that existed at ``at``."""
    return state_of(events_at(history, at))


def select(state: Dict[str, Event], path: str) -> List[Tuple[str, Event]]:
    """The entries of ``state`` at ``path`` or inside it ("" is the whole
    folder), sorted (parents first)."""
    if not path:
        return sorted(state.items())
    prefix = path + "/"
    return sorted((p, e) for p, e in state.items() if p == path or p.startswith(prefix))
