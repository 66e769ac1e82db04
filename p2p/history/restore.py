"""The folder as it was at a moment: which events were current then.

Pure given the events: ``state_of`` folds events (in log order, which is a
causal order) into path -> winning event; ``state_at`` picks the events of a
moment from a History. A moment is an ISO-8601 time (naive = local time, 'Z'
or an offset honoured; the events whose origin wall clock ``time`` is not
later), or an event id (the log prefix up to and including it): ``ORIGIN:SEQ``
where ORIGIN is the device id or any prefix of it that names one origin of
the history, as ``p2p log`` prints it (``SXFSBUJ:5``; case and dashes free).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Dict, Iterable, List, Optional, Tuple, Union

from p2p.history.event import Event
from p2p.history.precedence import live_tree

_EVENT_ID = re.compile(r"([A-Za-z2-7][A-Za-z2-7-]*):([1-9][0-9]*)\Z")  # an ISO date always has a 0 or 1
DEVICE_ID_LENGTH = 32


class BadMoment(ValueError):
    """An --at value that is neither an ISO-8601 time nor a known event id."""


def parse_moment(at: str) -> Union[float, str]:
    """An event id, full or short (returned as ``ORIGIN-PREFIX:SEQ``, upper
    case, no dashes), or an ISO-8601 time (returned as unix seconds)."""
    text = at.strip()
    match = _EVENT_ID.match(text)
    if match:
        prefix = match.group(1).replace("-", "").upper()
        if len(prefix) > DEVICE_ID_LENGTH:
            raise BadMoment(f"{at!r}: a device id has {DEVICE_ID_LENGTH} characters, not {len(prefix)}")
        return f"{prefix}:{match.group(2)}"
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
    return _prefix_through(history.events(), resolve_event_id(history, moment))


def resolve_event_id(history, event_id: str) -> str:
    """The full id of the event ``PREFIX:SEQ`` names in ``history``; BadMoment
    when no origin, or more than one, starts with PREFIX, or it has no such event."""
    prefix, _, seq = event_id.partition(":")
    vv = history.vv
    origins = sorted(origin for origin in vv if origin.startswith(prefix))
    if not origins:
        raise BadMoment(f"no event {event_id}: no device id in the history starts with {prefix}")
    if len(origins) > 1:
        raise BadMoment(f"{event_id} is ambiguous: {prefix} starts the device ids "
                        + ", ".join(origins) + "; give more of the id")
    full = f"{origins[0]}:{seq}"
    if not history.knows(full):
        raise BadMoment(f"no event {event_id} in the history: {origins[0]} has events 1 to {vv[origins[0]]}")
    return full


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


def listing(state: Dict[str, Event], path: str) -> List[dict]:
    """``path`` in ``state`` (the live tree, or the tree at a moment), one level:
    a directory (or "" for the folder) is an entry "." for itself, then the
    entries one level under it, by name; a file or symlink is its own entry;
    a path ``state`` does not have, no entry. Each entry is a dict (name, kind,
    size, mtime, origin, hash): what ``p2p ls`` shows and a ListReply carries."""
    def entry(name: str, e: Optional[Event] = None) -> dict:  # no event: a directory implied by deeper paths
        if e is None:
            return {"name": name, "kind": "dir", "size": 0, "mtime": 0, "origin": ""}
        return {"name": name, "kind": e.kind, "size": e.size, "mtime": e.mtime, "origin": e.origin, "hash": e.hash}

    prefix = path.strip("/")
    start = prefix + "/" if prefix else ""
    own = state.get(prefix) if prefix else None
    if own is not None and own.kind != "dir":
        return [entry(prefix.rpartition("/")[2], own)]
    out: Dict[str, dict] = {}
    for p, e in state.items():
        if not p.startswith(start) or p == prefix:
            continue
        name, _, rest = p[len(start):].partition("/")
        if rest:
            out.setdefault(name, entry(name))
        else:
            out[name] = entry(name, e)
    if prefix and own is None and not out:
        return []
    return [entry(".", own)] + sorted(out.values(), key=lambda d: d["name"])
