"""What the /rest endpoints answer (docs/API.md), as plain functions of their
collaborators: the node's status dict, an ``EventLog`` read beside the
running history, a tree of events, the block store, the folder's root.

No sockets and no gevent: ``p2p/net/gui.py`` calls these in the hub (cheap
ones) or in the node's thread pool (those that read the log or the disk),
and the tests call them directly. A bad request raises ``ApiError`` with the
HTTP status and a one-line message for the page.
"""

from __future__ import annotations

import posixpath
from typing import Dict, Iterator, Optional

from p2p import limits
from p2p.commands.log import matches, short_id
from p2p.commands.restore import RestoreError, restore_in_place
from p2p.history.event import Event, InvalidEvent, parse_event_id
from p2p.history.paths import UnsafePath, check_path
from p2p.history.restore import BadMoment, listing, state_at
from p2p.security.identity import format_device_id
from p2p.sync.conflicts import CONFLICT_MARK, conflict_original


class ApiError(Exception):
    """A request the API refuses: ``status`` is the HTTP status, the message is for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class LogView:
    """The history as ``p2p.history.restore.state_at`` reads it, from a
    read-only ``EventLog`` opened beside the running node (in a pool thread:
    the node's own ``History`` stays in the hub) and the node's version
    vector, copied in the hub before."""

    def __init__(self, log, vv: Dict[str, int]):
        self.log = log
        self.vv = dict(vv)

    def events(self) -> Iterator[Event]:
        return (event for _, event in self.log.iter_from(0))

    def knows(self, event_id: str) -> bool:
        origin, seq = parse_event_id(event_id)
        return seq <= self.vv.get(origin, 0)


# -- small pieces ---------------------------------------------------------------
def folder_path(text: Optional[str]) -> str:
    """A path inside the folder as the page sends it ("" or "/" for the folder itself)."""
    cleaned = (text or "").strip().strip("/")
    while cleaned.startswith("./"):
        cleaned = cleaned[2:]
    if cleaned in ("", "."):
        return ""
    try:
        return check_path(cleaned)
    except UnsafePath as exc:
        raise ApiError(400, f"{text!r} is not a path inside the folder: {exc}") from None


def event_view(event: Event, names: Dict[str, str]) -> dict:
    """One event as the timeline shows it; a rename is its create half, type "rename"."""
    return {
        "id": event.id, "short": short_id(event), "time": event.time, "origin": event.origin,
        "peer": names.get(event.origin) or event.origin[:7],
        "type": "rename" if event.moved_from is not None else event.type, "kind": event.kind,
        "path": event.path, "from": event.moved_from, "size": 0 if event.is_delete else event.size,
        "hash": event.hash, "target": event.target,
    }


def completion(vv: Dict[str, int], peer_vv: Dict[str, int]) -> float:
    """The share (0-100) of our history's events that a peer is known to have."""
    total = sum(vv.values())
    if not total:
        return 100.0
    return 100.0 * sum(min(peer_vv.get(origin, 0), count) for origin, count in vv.items()) / total


def folder_state(status: dict, user_paused: bool) -> str:
    """The folder's state in a few words: paused, waiting, syncing x%, not synced, in sync."""
    if user_paused:
        return "paused"
    if status.get("paused"):
        return f"waiting: {status['paused']}"
    transfers = status.get("transfers") or []
    if transfers:
        total = sum(t["bytes"] for t in transfers)
        done = sum(t["done"] for t in transfers)
        return f"syncing {100.0 * done / total if total else 0.0:.0f}%"
    if status["folder_state"].get("pending"):
        return f"waiting for {status['folder_state']['pending']} events' predecessors"
    if status.get("not_synced"):
        return f"{len(status['not_synced'])} not synced"
    return "in sync" if status["folder_state"].get("in_sync") else "syncing"


# -- endpoints ----------------------------------------------------------------------
def status_view(status: dict, *, discovery: str, gui: str, peers: Dict[str, dict], rates, store_bytes: int,
                user_paused: dict, feed_last: int) -> dict:
    """GET /rest/status: ``status`` is ``Node.status()``; ``peers`` holds, per
    device id, what the registry knows beyond it (completion, last error);
    ``rates`` a ``p2p.gui.rates.Rates``."""
    now = status["now"]
    paused_peers = set(user_paused.get("peers", ()))
    rows, up, down = [], 0.0, 0.0
    for p in status["peers"]:
        extra = peers.get(p["id"], {})
        upload, download = rates.sample(p["id"], p["sent"], p["received"], now)
        up, down = up + upload, down + download
        paused = p["id"] in paused_peers
        rows.append(dict(p, state="paused" if paused else p["state"], paused=paused, upload_rate=upload,
                         download_rate=download, completion=extra.get("completion"),
                         last_error=extra.get("last_error", "")))
    rates.forget_others(p["id"] for p in status["peers"])
    rows.sort(key=lambda p: (p["state"] != "connected", p["name"], p["id"]))
    f = status["folder_state"]
    return {
        "device": {"id": status["device"], "id_dashed": format_device_id(status["device"]), "name": status["name"],
                   "listen": status["listen"], "discovery": discovery, "gui": gui,
                   "upload_rate": up, "download_rate": down},
        "peers": rows,
        "folder": {"path": status["folder"], "state": folder_state(status, user_paused.get("folder", False)),
                   "files": f["files"], "dirs": f["dirs"], "bytes": f["bytes"], "events": f["events"],
                   "pending": f["pending"], "in_sync": f["in_sync"], "store_bytes": store_bytes,
                   "paused": bool(user_paused.get("folder")), "missing": status.get("paused", "")},
        "transfers": status["transfers"],
        "not_synced": status.get("not_synced", []),
        "feed": feed_last,
        "now": now,
    }


def timeline(log, *, prefix: str, limit: int, before: Optional[int], names: Dict[str, str]) -> dict:
    """GET /rest/history: the newest ``limit`` events (in the order this peer
    logged them, newest first) that concern ``prefix`` ("" for all), read
    backwards from byte ``before`` of the log (None: its end). ``next`` is the
    ``before`` of the following page, or None at the start of the log."""
    if not 1 <= limit <= limits.GUI_TIMELINE_MAX:
        raise ApiError(400, f"limit must be 1 to {limits.GUI_TIMELINE_MAX}, not {limit}")
    events, following = [], None
    for offset, event in log.iter_reverse(before):
        if event.moved_to is not None or not matches((event.path, event.moved_from), prefix):
            continue   # a rename is shown once, as its create half
        if len(events) == limit:   # there is more: the next page ends where this one does
            following = events[-1]["offset"]
            break
        events.append(dict(event_view(event, names), offset=offset))
    return {"events": events, "next": following}


def tree_view(state: Dict[str, Event], path: str, at: str, names: Dict[str, str]) -> dict:
    """GET /rest/tree: one directory of ``state`` (the folder at moment ``at``), its entries by name."""
    found = listing(state, path)
    if not found:
        raise ApiError(404, f"{path} did not exist as of {at}" if at != "now" else f"{path} is not in the folder")
    if found[0]["name"] != ".":
        raise ApiError(400, f"{path} is a {found[0]['kind']}, not a directory")
    entries = []
    for entry in found[1:]:
        full = posixpath.join(path, entry["name"]) if path else entry["name"]
        event = state.get(full)
        entries.append(dict(entry, path=full, id=event.id if event else None, target=event.target if event else None,
                            peer=(names.get(event.origin) or event.origin[:7]) if event else ""))
    return {"at": at, "path": path, "entries": entries, "paths": len(state)}


def state_of_moment(view: LogView, at: str) -> Dict[str, Event]:
    """The tree at moment ``at`` (an event id or an ISO-8601 time), or ApiError 400."""
    try:
        return state_at(view, at)
    except (BadMoment, InvalidEvent) as exc:
        raise ApiError(400, str(exc)) from None


def restore(view: LogView, store, root, path: str, at: str) -> dict:
    """POST /rest/restore: ``path`` ("" for the whole folder) back in place as
    it was at ``at``, as ``p2p restore PATH --at AT`` does; the running node's
    watcher records what it writes as new events."""
    if not at or at == "now":
        raise ApiError(400, "a restore needs a moment: an event id (ORIGIN:SEQ) or an ISO-8601 time")
    state = state_of_moment(view, at)
    try:
        return {"summary": restore_in_place(state, store, root, path, at)}
    except RestoreError as exc:
        raise ApiError(409, str(exc)) from None


def conflicts(tree: Dict[str, Event], names: Dict[str, str]) -> dict:
    """GET /rest/conflicts: every conflict copy in the folder, with the version it was kept beside."""
    out = []
    for path, event in sorted(tree.items()):
        if CONFLICT_MARK not in path or event.kind != "file":
            continue
        original = conflict_original(path)
        if original is None:
            continue
        current = tree.get(original)
        out.append({"copy": event_view(event, names), "of": original,
                    "current": event_view(current, names) if current is not None else None})
    return {"conflicts": out}


def download_name(event: Event) -> str:
    """The file name a download is saved under: the path's last part."""
    return posixpath.basename(event.path)
