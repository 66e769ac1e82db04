"""Simulated peers on an in-memory network, for the convergence property test.

Pure: no sockets, no clock (time is a step counter passed in). Each ``SimPeer``
has a real ``History`` (its events.jsonl under a temporary home), a simulated
disk (path -> ``Item``) and a local record (path -> ``Record``, the node's
``LocalState``), and applies the pure rules of ``p2p/sync`` exactly the way
``p2p/net/node.py`` does. Each method names the node (or writer/scanner)
method it mirrors; keep them in step when the node changes.

``SimNet`` carries two kinds of message between peers — event batches and
version-vector summaries — and may deliver them in any order, duplicate them,
or drop them across a partition. A link that comes back up exchanges
summaries, answered with ``missing_for`` (the session's backfill). Blocks are
irrelevant here: the content of every version is in ``CONTENT`` by hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional

from p2p.folder.apply import LocalChanged
from p2p.folder.scan import Change
from p2p.history.history import History
from p2p.history.precedence import winner
from p2p.sync.plan import (FETCH, MAKE_DIR, RELABEL, REMOVE, conflict_copies, folder_action, local_parents,
                           paths_to_recheck)

SECOND = 10 ** 9
FILE_MODE, DIR_MODE = 0o644, 0o755
CONTENT: Dict[str, bytes] = {}      # sha256 hex -> bytes: every version's content, reachable by all


def digest(content: bytes) -> str:
    key = hashlib.sha256(content).hexdigest()
    CONTENT[key] = content
    return key


def depth(path: str) -> int:
    return path.count("/")


def parents_of(path: str) -> List[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(frozen=True)
class Item:
    """A path on the simulated disk."""
    kind: str            # "file" or "dir"
    content: bytes
    mtime: int           # ns

    @property
    def hash(self) -> str:
        return digest(self.content) if self.kind == "file" else ""


@dataclass(frozen=True)
class Record:
    """The node's ``Entry``: what this peer believes is on disk at a path."""
    kind: str
    hash: str
    mtime: int
    event_id: str

    def same(self, item: Item) -> bool:                  # Entry.same_stat
        if self.kind == "dir":
            return item.kind == "dir"
        return item.kind == "file" and item.hash == self.hash and item.mtime == self.mtime


@dataclass(frozen=True)
class Message:
    """One frame in flight between two peers."""
    src: "SimPeer"
    dst: "SimPeer"
    kind: str            # "events" (list of event dicts) or "summary" (a version vector)
    payload: object


class SimPeer:
    """One simulated node: its history, disk and local record, and the node's rules applied to them."""

    def __init__(self, net: "SimNet", home: Path, device_id: str):
        self.net = net
        self.id = device_id
        self.home = home
        self.history = History.open(home, device_id)
        self.disk: Dict[str, Item] = {}
        self.state: Dict[str, Record] = {}
        self.to_scan: set = set()        # the watcher's reports not scanned yet (node.local_q)
        self.dirty: set = set()          # node.dirty
        self.fetches: Dict[str, object] = {}   # Fetcher.jobs: path -> wanted event
        self.user_replaced: set = set()  # contents the user overwrote or deleted before any scan saw them

    # -- the user ------------------------------------------------------------------
    def _user_changes(self, path: str) -> None:
        """The user replaces or removes ``path``: content no scan saw is replaced knowingly."""
        item, record = self.disk.get(path), self.state.get(path)
        if item is not None and item.kind == "file" and (record is None or record.hash != item.hash):
            self.user_replaced.add(item.content)

    def _room_for(self, path: str) -> bool:
        return all(self.disk.get(p, Item("dir", b"", 0)).kind == "dir" for p in parents_of(path))

    def _make_parents(self, path: str, now: int) -> None:
        for p in parents_of(path):
            if p not in self.disk:
                self.disk[p] = Item("dir", b"", now)
                self.to_scan.add(p)

    def write(self, path: str, content: bytes, now: int) -> bool:
        if not self._room_for(path) or self.disk.get(path, Item("file", b"", 0)).kind != "file":
            return False
        self._user_changes(path)
        self._make_parents(path, now)
        self.disk[path] = Item("file", content, now)
        self.to_scan.add(path)
        return True

    def mkdir(self, path: str, now: int) -> bool:
        if path in self.disk or not self._room_for(path):
            return False
        self._make_parents(path, now)
        self.disk[path] = Item("dir", b"", now)
        self.to_scan.add(path)
        return True

    def delete(self, path: str) -> bool:
        """Remove a file, or a directory and everything in it."""
        if path not in self.disk:
            return False
        for p in [p for p in self.disk if p == path or p.startswith(path + "/")]:
            self._user_changes(p)
            del self.disk[p]
        self.to_scan.add(path)
        return True

    def rename(self, path: str, new_path: str) -> bool:
        item = self.disk.get(path)
        if item is None or item.kind != "file" or new_path in self.disk or not self._room_for(new_path):
            return False
        self._make_parents(new_path, item.mtime)
        self.disk[new_path] = self.disk.pop(path)       # a rename keeps the mtime (and the inode)
        self.to_scan.update((path, new_path))
        return True

    def restart(self) -> None:
        """Node.stop, then Node.start: the history reopened, a full scan, every path reconciled."""
        self.history.close()
        self.history = History.open(self.home, self.id)
        self.fetches.clear()
        self.to_scan.add("")
        self.dirty.update(self.history.paths())

    # -- local changes: Node._local_loop, _expand, Scanner.observe, _record, _local_event --
    def scan(self, now: int) -> None:
        paths, self.to_scan = self.to_scan, set()
        scanned = self._expand(paths)
        changes = [c for c in map(self._observe, scanned) if c is not None]
        self._record(changes, now)
        self.dirty.update(paths_to_recheck(scanned))                                  # PROPOSED

    def _expand(self, paths) -> List[str]:
        out = set()
        for path in paths:
            if path == "" or path in self.disk and self.disk[path].kind == "dir":
                out.update(p for p in self.disk if p == path or p.startswith(path + "/") or not path)
            else:
                out.add(path)
            out.update(p for p in self.state if p.startswith(path + "/") or not path)
        return sorted(out)

    def _observe(self, path: str) -> Optional[Change]:
        item, record = self.disk.get(path), self.state.get(path)
        if item is None:
            return None if record is None else Change(path, record.kind, deleted=True)
        if record is not None and record.same(item):
            return None
        if item.kind == "dir":
            return Change(path, "dir", False, mode=DIR_MODE, mtime=item.mtime)
        size = len(item.content)
        return Change(path, "file", False, size=size, mode=FILE_MODE, mtime=item.mtime, hash=item.hash,
                      blocks=((item.hash, size),) if size else ())

    def _record(self, changes, now: int) -> None:
        deleted = {c.path: c for c in changes if c.deleted}
        created = [c for c in changes if not c.deleted]
        by_hash: Dict[str, list] = {}
        for c in deleted.values():
            record = self.state.get(c.path)
            if record is not None and record.kind == "file":
                by_hash.setdefault(record.hash, []).append(c)
        new_events = []
        for c in created:
            moved_from = None
            if c.kind == "file" and self.state.get(c.path) is None and by_hash.get(c.hash):
                source = by_hash[c.hash].pop(0)
                del deleted[source.path]
                new_events += self._local_event(source, now, moved_to=c.path)
                moved_from = source.path
            new_events += self._local_event(c, now, moved_from=moved_from)
        for c in sorted(deleted.values(), key=lambda c: depth(c.path), reverse=True):
            new_events += self._local_event(c, now)
        if new_events:
            self.net.broadcast(self, new_events, source=None)

    def _local_event(self, change: Change, now: int, moved_from=None, moved_to=None) -> list:
        path = change.path
        record = self.state.get(path)
        heads = self.history.heads(path)
        current = winner(heads)
        live = current is not None and current.type != "delete"
        if change.deleted:
            self.state.pop(path, None)
            if not live or record is None:
                return []
            parents = local_parents(record.event_id, True, heads)
            return [self.history.make_local("delete", record.kind, path, parents=parents, time=float(now),
                                            moved_to=moved_to)]
        if live and current.kind == change.kind and current.hash == change.hash and current.mode == change.mode:
            self.state[path] = Record(change.kind, change.hash, change.mtime, current.id)
            return []
        parents = local_parents(record.event_id if record else None, record is not None, heads)
        event = self.history.make_local(
            "update" if live and record is not None else "create", change.kind, path,
            size=change.size, mode=change.mode, mtime=change.mtime, hash=change.hash, blocks=change.blocks,
            parents=parents, time=float(now), moved_from=moved_from)
        self.state[path] = Record(change.kind, change.hash, change.mtime, event.id)
        return [event]

    # -- remote events: Node.on_remote_events, Session._on_summary ---------------
    def receive(self, message: Message) -> None:
        if message.kind == "summary":
            missing = [e.to_dict() for e in self.history.missing_for(message.payload)]
            if missing:
                self.net.send(self, message.src, "events", missing)
            return
        accepted, rejected = self.history.merge(message.payload)
        assert not rejected, rejected
        if accepted:
            self.net.broadcast(self, accepted, source=message.src)
            self.dirty.update(e.path for e in accepted)
        if self.history.pending_count:
            self.net.send(self, message.src, "summary", self.history.vv)   # Session._ask_again

    # -- bringing the disk to the winners: Node._reconcile_loop, _reconcile -------
    def reconcile(self, now: int) -> None:
        paths, self.dirty = self.dirty, set()
        targets = {p: self.history.current(p) for p in paths}
        alive = sorted(p for p, t in targets.items() if t is not None and t.type != "delete")
        gone = sorted((p for p in paths if p not in alive), key=depth, reverse=True)
        for path in alive + gone:
            try:
                self._reconcile(path, targets[path], now)
            except LocalChanged as exc:
                self.to_scan.add(str(exc))

    def _reconcile(self, path: str, target, now: int) -> None:
        self._keep_conflict_copies(path, now)
        record = self.state.get(path)
        action = folder_action(target, record.kind if record else None, record.hash if record else "",
                               record.event_id if record else "")
        if action == REMOVE:
            if self._remove(path):
                self.dirty.update(paths_to_recheck([path]))                               # PROPOSED
        elif action == MAKE_DIR:
            self._make_dir(path, target, now)
        elif action == RELABEL:
            self.state[path] = replace(record, event_id=target.id)
        elif action == FETCH and path not in self.fetches:       # Fetcher.want
            self.fetches[path] = target

    def _keep_conflict_copies(self, path: str, now: int) -> None:
        for copy, loser in conflict_copies(path, self.history.heads(path), self.id):
            if self.history.heads(copy) or copy in self.disk:
                continue
            self._write_file(copy, loser, now)
            self.state.pop(copy, None)
            self.to_scan.add(copy)

    def finish_fetch(self, path: str, now: int) -> None:
        """Fetcher._run for one job: Node.still_wanted, commit_remote_file, then fetch_finished."""
        event = self.fetches.pop(path)
        current = self.history.current(path)
        if current is None or current.id != event.id:
            self.dirty.add(path)
            return
        try:
            self._keep_conflict_copies(path, now)
            self._write_file(path, event, now)
        except LocalChanged:
            self.to_scan.add(path)

    # -- the disk writes: FolderWriter -----------------------------------------
    def _check_unchanged(self, path: str) -> None:
        item, record = self.disk.get(path), self.state.get(path)
        if item is None:
            if record is not None and record.kind == "file":
                raise LocalChanged(path)
            return
        if record is None or not record.same(item):
            raise LocalChanged(path)

    def _ensure_parents(self, path: str, now: int) -> None:
        for p in parents_of(path):
            item = self.disk.get(p)
            if item is None:
                self.disk[p] = Item("dir", b"", now)
                if p not in self.state:
                    self.state[p] = Record("dir", "", now, "")
            elif item.kind != "dir":
                raise LocalChanged(p)

    def _write_file(self, path: str, event, now: int) -> None:
        self._ensure_parents(path, now)
        self._check_unchanged(path)
        self.disk[path] = Item("file", CONTENT[event.hash] if event.size else b"", event.mtime)
        self.state[path] = Record("file", event.hash, event.mtime, event.id)

    def _make_dir(self, path: str, event, now: int) -> None:
        self._ensure_parents(path, now)
        item = self.disk.get(path)
        if item is None:
            item = self.disk[path] = Item("dir", b"", now)
        if item.kind != "dir":
            raise LocalChanged(path)
        self.state[path] = Record("dir", "", item.mtime, event.id)

    def _remove(self, path: str) -> bool:
        record = self.state.get(path)
        if record is None:
            return path not in self.disk
        if record.kind == "dir":
            if any(p.startswith(path + "/") for p in self.disk):
                return False                 # something new inside: it survives
            self.disk.pop(path, None)
            self.state.pop(path)
            return True
        self._check_unchanged(path)
        self.disk.pop(path, None)
        self.state.pop(path)
        return True

    @property
    def busy(self) -> bool:
        return bool(self.to_scan or self.dirty or self.fetches)

    def folder(self) -> Dict[str, object]:
        """The disk as the end-to-end tests compare it: file -> bytes, directory -> 'dir'."""
        return {p: (item.content if item.kind == "file" else "dir") for p, item in self.disk.items()}


class SimNet:
    """Messages in flight between peers; links cut by a partition drop theirs."""

    def __init__(self):
        self.peers: List[SimPeer] = []
        self.in_flight: List[Message] = []
        self.cut: set = set()            # frozenset({a.id, b.id}) for each link that is down

    def add(self, home: Path, device_id: str) -> SimPeer:
        peer = SimPeer(self, home, device_id)
        self.peers.append(peer)
        return peer

    def linked(self, a: SimPeer, b: SimPeer) -> bool:
        return frozenset((a.id, b.id)) not in self.cut

    def send(self, src: SimPeer, dst: SimPeer, kind: str, payload) -> None:
        if self.linked(src, dst):
            self.in_flight.append(Message(src, dst, kind, payload))

    def broadcast(self, src: SimPeer, events, source: Optional[SimPeer]) -> None:
        """Node._broadcast_loop: to every other connected peer but the one they came from."""
        batch = [e.to_dict() for e in events]
        for peer in self.peers:
            if peer is not src and peer is not source:
                self.send(src, peer, "events", batch)

    def deliver(self, index: int) -> None:
        message = self.in_flight.pop(index % len(self.in_flight))
        message.dst.receive(message)

    def duplicate(self, index: int) -> None:
        self.in_flight.append(self.in_flight[index % len(self.in_flight)])

    def restart(self, peer: SimPeer) -> None:
        """The peer stops (its channels and what was in flight on them are lost) and starts again."""
        self.in_flight = [m for m in self.in_flight if peer not in (m.src, m.dst)]
        peer.restart()
        for other in self.peers:
            if other is not peer:
                self.send(peer, other, "summary", peer.history.vv)
                self.send(other, peer, "summary", other.history.vv)

    def partition(self, sides: int) -> None:
        """Peer i is on side bit i of ``sides``; links between the sides go down."""
        side = {p.id: (sides >> i) & 1 for i, p in enumerate(self.peers)}
        self._set_cut({frozenset((a.id, b.id)) for a in self.peers for b in self.peers
                       if side[a.id] != side[b.id]})

    def heal(self) -> None:
        self._set_cut(set())

    def _set_cut(self, cut: set) -> None:
        restored = self.cut - cut
        self.cut = cut
        self.in_flight = [m for m in self.in_flight if self.linked(m.src, m.dst)]
        for a in self.peers:         # a new session: each side sends its summary (Session.run)
            for b in self.peers:
                if a is not b and frozenset((a.id, b.id)) in restored:
                    self.send(a, b, "summary", a.history.vv)

    def settle(self, now: int, max_rounds: int = 60) -> int:
        """Heal, then run every peer and deliver every message until all is quiet.

        Returns the clock after settling; raises AssertionError if it never goes quiet."""
        self.heal()
        for _ in range(max_rounds):
            while self.in_flight:
                self.deliver(0)
            if any(p.busy for p in self.peers):
                for peer in self.peers:
                    now += 1
                    peer.scan(now)
                    peer.reconcile(now)
                    for path in sorted(peer.fetches):
                        peer.finish_fetch(path, now)
                continue
            vvs = [p.history.vv for p in self.peers]
            if all(vv == vvs[0] for vv in vvs):
                return now
            for a in self.peers:          # anti-entropy: everyone asks everyone
                for b in self.peers:
                    if a is not b:
                        self.send(a, b, "summary", a.history.vv)
        raise AssertionError(f"the network did not go quiet in {max_rounds} rounds")

    def close(self) -> None:
        for peer in self.peers:
            peer.history.close()
