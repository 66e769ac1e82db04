"""The history of one peer: the event log, the index of per-path heads, the
version vector, the Lamport clock and the causal buffer.

Not thread-safe: one owner (the node's hub) calls it. The index never holds
events themselves, only byte offsets into events.jsonl, so memory stays
proportional to the number of paths and events (8 bytes per event), not to
their size:

* per origin, an array of line offsets indexed by ``seq - 1`` (gives the
  version vector, ``id -> offset`` and ``missing_for`` without a scan);
* per path, the offset(s) and id(s) of its heads: the events of that path
  that no other event of that path names as a parent.

Heads are a pure function of the set of events, and events are applied only
in causal order (every parent first), so merging the same events in any order
gives the same heads. Both live in SQLite, ``.p2p/index.db`` (``IndexDB``),
updated in one transaction per appended batch; the heads are never loaded
whole (a lookup by path is one query), the offsets are (8 bytes per event).
events.jsonl stays the source of truth: the database records which prefix of
the log it covers (its size, and the offset and sha256 of its last line) and
from where to replay (``covered``: the first line not indexed yet). At open it
is used only if that prefix is still the log's; then only the lines after
``covered`` are replayed (an event already indexed at the same offset is
skipped silently). A database that is missing, unreadable, of another format,
or AHEAD of the log (a crash cut the log's unsynced tail under it) or over a
different log is deleted and rebuilt from the log, with one warning: heads
the log does not hold are never used.

Disk faults: an append that fails leaves the log and the index as they were
(``LogWriteFailed``; events ``merge`` had taken from the causal buffer are put
back), so the caller can try again once the disk has room. A failed fsync is
final (``LogBroken``). An index save the disk has no room for is rolled
back, warned about once and kept in memory for the next batch's transaction
(it only saves replay time).

Our own sequence numbers never repeat: ``.p2p/seq.mark`` (``SeqMark``) is
raised before an event beyond it is written, and at open ``lost_own_events``
says whether the log holds fewer of our events than we issued. An event of
our own origin that a peer offers and we lack is never taken (it proves the
same: a lost log, or a copy of this home running elsewhere) but noted in
``own_offered`` for the node, which then takes a new device id.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import sqlite3
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

from p2p import limits
from p2p.history.event import FIELD_NAMES, Event, InvalidEvent, is_device_id, make_id, parse_event_id
from p2p.history.index import BadIndex, IndexDB
from p2p.history.log import EventLog, LogBroken, LogWriteFailed
from p2p.history.seqmark import MARK_NAME, SeqMark
from p2p.history.precedence import live_tree, winner

log = logging.getLogger("p2p.history")

INDEX_NAME = "index.db"
OLD_SNAPSHOT_NAME = "index.snapshot"     # the index file of earlier versions: removed at open
EVENT_CACHE = 16384         # parsed events kept for repeated heads()/current()/tree() calls (~25 MB)


LOCAL_EVENT_DEFAULTS = dict(size=0, mode=0, mtime=0, hash="", blocks=(), parents=None,
                            moved_from=None, moved_to=None, target=None)   # what a local event has unless given


class History:
    """Log + index + causal buffer. Build it with ``History.open``."""

    def __init__(self, home: Path, device_id: Optional[str], event_log: EventLog):
        self.home = home
        self.device_id = device_id
        self._log = event_log
        self._offsets: Dict[str, array] = {}        # origin -> offsets by seq-1
        self._index: Optional[IndexDB] = None       # path -> heads; stores the offsets too
        self._unindexed: Set[int] = set()           # offsets of log lines waiting in the causal buffer
        self._index_failing = False                 # the last save of the index failed (warned once)
        self._lamport = 0
        self._pending: Dict[str, Dict[int, Tuple[Event, Optional[int]]]] = {}
        self._pending_count = 0
        self._pending_bytes = 0                     # serialized size of the events waiting from peers
        self._sizes: Dict[Tuple[str, int], int] = {}   # (origin, seq) waiting -> its serialized size
        self._brought: Dict[Tuple[str, int], tuple] = {}   # (origin, seq) waiting -> the sources that sent it
        self._cache: "OrderedDict[int, Event]" = OrderedDict()
        self._mark: Optional[SeqMark] = None
        self.lost_own_events: Optional[str] = None   # why our own seq cannot go on (see the module doc)
        self.own_offered = 0                         # highest seq of ours a peer offered that we lack
        self.replayed = 0                            # events read from the log at open (beyond the index)

    # -- opening and closing ----------------------------------------------
    @classmethod
    def open(cls, home: Path, device_id: Optional[str], *, read_only: bool = False) -> "History":
        """Open (or create) the history in ``home``.

        ``read_only`` is for commands beside a running node (``p2p log``,
        ``p2p restore``): no lock, no repair, no writes, ``device_id`` may be None.
        """
        home = Path(home)
        if not read_only:
            if not is_device_id(device_id):
                raise ValueError(f"device id {device_id!r} is not 32 characters A-Z2-7")
            (home / ".p2p").mkdir(parents=True, exist_ok=True)
        history = cls(home, device_id, EventLog(home / "events.jsonl", read_only=read_only))
        try:
            start = history._open_index(read_only)
            history.replayed = history._replay(start)
            history._save_index()
            if not read_only:
                history._open_mark()
        except BaseException:
            history._log.close()
            if history._index is not None:
                history._index.close()
            raise
        return history

    def _open_mark(self) -> None:
        self._mark = SeqMark(self.home / ".p2p" / MARK_NAME, self.device_id)
        waiting = self._pending.get(self.device_id)
        if waiting:
            self.lost_own_events = (f"events.jsonl lacks event {self.own_count + 1} of this device id but holds "
                                    f"{len(waiting)} later ones (a corrupt line?)")
        else:
            self.lost_own_events = self._mark.lost(self.own_count)
        if self.lost_own_events is None:
            try:
                self._mark.adopt(self.own_count)
            except LogWriteFailed as exc:   # retried before our next event is written
                log.warning("%s", exc)

    def change_device_id(self, device_id: str) -> None:
        """Issue events as ``device_id`` from now on (a new identity, with its own mark)."""
        if not is_device_id(device_id):
            raise ValueError(f"device id {device_id!r} is not 32 characters A-Z2-7")
        self.device_id = device_id
        self.lost_own_events = None
        self.own_offered = 0
        self._open_mark()

    def sync(self) -> None:
        """fsync the log (group commit; ``LogBroken`` if that fails), then save
        the index's changes a batch of ``make_local(durable=False)`` left
        (one transaction for the batch, not one per event)."""
        self._log.sync()
        if self._index.pending:
            self._save_index()

    def close(self) -> None:
        """Sync the log, save what the index still holds, release both; after a failed fsync only release."""
        try:
            if not self._log.read_only and self._log.broken is None:
                self._log.sync()
                if self._index.pending:
                    self._save_index()
                if self._mark is not None and self.lost_own_events is None:
                    self._mark.close(self.own_count)
        finally:
            self._log.close()
            self._index.close()

    @property
    def broken(self) -> Optional[LogBroken]:
        """The failed fsync (or cut-back) that makes the log unusable, or None."""
        return self._log.broken

    # -- reading the state -------------------------------------------------
    @property
    def vv(self) -> Dict[str, int]:
        return {origin: len(offsets) for origin, offsets in self._offsets.items()}

    @property
    def own_count(self) -> int:
        """How many events of our own device id the log holds (our next seq is one more)."""
        return len(self._offsets.get(self.device_id, ()))

    @property
    def lamport(self) -> int:
        return self._lamport

    @property
    def pending_count(self) -> int:
        """Events waiting in the causal buffer for a gap to fill."""
        return self._pending_count

    def __len__(self) -> int:
        return sum(len(offsets) for offsets in self._offsets.values())

    def heads(self, path: str) -> Tuple[Event, ...]:
        """The events of ``path`` no other event supersedes (deletes included), by id."""
        return self._events_of(self._index.heads(path))

    def heads_many(self, paths: Iterable[str]) -> Dict[str, Tuple[Event, ...]]:
        """``heads`` of many paths, read from the index in one query per
        ``limits.IN_CHUNK`` (a batch of changes looks its paths up at once)."""
        return {path: self._events_of(heads) for path, heads in self._index.heads_many(list(paths)).items()}

    def sole_heads(self, recorded: Dict[str, str]) -> Set[str]:
        """The paths of ``recorded`` (path -> event id) whose only head is that
        event: from the index alone (no log line is read), one query per
        ``limits.IN_CHUNK`` of the paths its cache lacks."""
        return {path for path, heads in self._index.heads_many(list(recorded)).items()
                if len(heads) == 1 and heads[0][1] == recorded[path]}

    def _events_of(self, heads) -> Tuple[Event, ...]:
        return tuple(sorted((self._read(offset) for offset, _ in heads), key=lambda e: e.id))

    def all_heads(self) -> Iterator[Tuple[str, Tuple[Event, ...]]]:
        """(path, heads) for every path that has ever had an event (reads every head event)."""
        for path, heads in self._index.groups():
            yield path, self._events_of(heads)

    def paths(self) -> Iterator[str]:
        """Every path that has ever had an event (from the index alone: no log line is read)."""
        for path, _ in self._index.groups():
            yield path

    def differing(self, recorded: Iterable[Tuple[str, str]]) -> Iterator[str]:
        """The paths whose heads are not exactly the one event ``recorded`` (path,
        event id pairs: what the disk holds) names, and the paths of the history
        that ``recorded`` lacks: what may need a write. One ordered pass over the
        index's heads; no log line is read."""
        return iter(self._index.differing(recorded))

    def current(self, path: str) -> Optional[Event]:
        """The winning head of ``path`` (possibly a delete), or None if never seen."""
        return winner(self.heads(path))

    def tree(self) -> Dict[str, Event]:
        """path -> winning event, for every path whose winner is not a delete."""
        return live_tree(self.all_heads())

    def get(self, event_id: str) -> Optional[Event]:
        """The event with this id, or None if not (yet) in the log."""
        offset = self._offset_of(event_id)
        return None if offset is None else self._read(offset)

    def knows(self, event_id: str) -> bool:
        origin, seq = parse_event_id(event_id)
        return seq <= len(self._offsets.get(origin, ()))

    # -- iteration ---------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """Every event in log order."""
        return (event for _, event in self._log.iter_from(0, self._log.size))

    def missing_for(self, vv: Dict[str, int]) -> Iterator[Event]:
        """The events a peer with version vector ``vv`` lacks, in log order.

        Uses the per-origin offsets: reads only the lines the peer lacks.
        """
        wanted = [offsets[vv.get(origin, 0):] for origin, offsets in self._offsets.items()
                  if len(offsets) > vv.get(origin, 0)]
        for offset in heapq.merge(*(sorted(part) for part in wanted)):
            yield self._read(offset)

    # -- writing -----------------------------------------------------------
    def make_local(self, type: str, kind: str, path: str, *, time: float, durable: bool = True, **fields) -> Event:
        """Stamp, append and index a new event made by this peer; ``fields`` are
        any of ``LOCAL_EVENT_DEFAULTS`` (``parents`` None: the path's heads).

        Durable (fsynced) by default. A caller making a batch passes
        ``durable=False`` and calls ``sync()`` once before any of the batch
        leaves this machine: a local event must never be lost after peers saw it.
        ``LogWriteFailed``: nothing was written or indexed; try again later.
        """
        return self.make_local_many([dict(fields, type=type, kind=kind, path=path, time=time)], durable=durable)[0]

    def make_local_many(self, specs: List[dict], *, durable: bool = True) -> List[Event]:
        """``make_local`` for a batch of events, each given by ``make_local``'s
        keyword arguments (``durable`` is for the whole batch): stamped in
        order, appended in one write and indexed; all of them or, on
        ``LogWriteFailed``, none. Each event's parents (its path's heads when
        None) are events already in the history, so a batch names a path once."""
        if self._log.read_only:
            raise PermissionError("read-only history")
        if self.lost_own_events is not None:
            raise PermissionError(f"not issuing events as {self.device_id}: {self.lost_own_events}")
        if len({spec["path"] for spec in specs}) != len(specs):
            raise ValueError("a batch of local events names a path twice")
        first = len(self._offsets.get(self.device_id, ())) + 1
        events = []
        for number, spec in enumerate(specs):
            seq = first + number
            fields = {**LOCAL_EVENT_DEFAULTS, **spec}
            if not fields.keys() <= FIELD_NAMES:
                raise TypeError(f"not fields of an event: {sorted(fields.keys() - FIELD_NAMES)}")
            parents = fields.pop("parents")
            if parents is None:
                parents = tuple(event.id for event in self.heads(spec["path"]))
            fields.update(id=make_id(self.device_id, seq), origin=self.device_id, seq=seq,
                          lamport=self._lamport + 1 + number, parents=tuple(parents))
            event = Event.of(fields)
            unknown = [p for p in event.parents if not self.knows(p)]
            if unknown:
                raise ValueError(f"parents not in the history: {unknown}")
            events.append(event)
        if events:
            self._mark.reserve(events[-1].seq)   # durable before an event with this seq can exist
            self._commit([(event, None) for event in events], durable=durable, save=durable)
        return events

    def merge(self, items: Iterable[Union[dict, Event]], source: object = None
              ) -> Tuple[List[Event], List[Tuple[object, Union[str, InvalidEvent]]]]:
        """Merge events from a peer: (newly appended events in causal order, rejected items with reasons).

        Idempotent and order-independent. An event is appended once its seq is
        the next of its origin and all its parents are known; until then it
        waits in a buffer bounded by ``limits.MAX_PENDING_EVENTS`` events and
        ``limits.MAX_PENDING_BYTES`` bytes (serialized). An invalid item is
        rejected with its ``InvalidEvent`` as the reason, one this peer
        refuses (its bounds) with a string. Known and
        already-buffered events are ignored. ``source`` (any hashable: the
        session) is remembered for the events that wait, so that
        ``drop_pending(source)`` can free them when it ends; events merged
        without a source wait until their turn comes. An event of our own
        origin that we lack is rejected and noted in ``own_offered``.
        ``LogWriteFailed``: nothing was appended; the released events are back
        in the buffer.
        """
        if self._log.read_only:
            raise PermissionError("read-only history")
        rejected: List[Tuple[object, str]] = []
        held: List[Tuple[object, Event]] = []
        for item in items:
            try:
                event = item if isinstance(item, Event) else Event.from_dict(item)
            except InvalidEvent as exc:
                rejected.append((item, exc))   # the sender's fault (the others are our limits)
                continue
            if self.knows(event.id):
                continue
            if event.seq in self._pending.get(event.origin, ()):   # waiting already: one more source has it
                sources = self._brought.get((event.origin, event.seq))
                if sources is not None and source not in sources:
                    if source is None:
                        del self._brought[(event.origin, event.seq)]   # no source: never dropped
                    else:
                        self._brought[(event.origin, event.seq)] = sources + (source,)
                continue
            if event.origin == self.device_id:
                self.own_offered = max(self.own_offered, event.seq)
                rejected.append((item, "an event of our own device id that our history lacks"))
                continue
            self._hold(event, None, source)
            held.append((item, event))
        ready = self._release()
        self._bound_bytes(held, rejected)
        while self._pending_count > limits.MAX_PENDING_EVENTS and held:  # refuse this batch's overflow
            item, event = held.pop()
            if self._unhold(event.origin, event.seq):
                rejected.append((item, f"causal buffer full ({limits.MAX_PENDING_EVENTS} events wait for parents)"))
        try:
            self._commit(ready, durable=False)
        except OSError:   # LogWriteFailed or LogBroken: not appended, so not lost either; their
            for event, offset in ready:   # turn has come, so they need no source to be dropped by
                self._hold(event, offset)
            raise
        return [event for event, offset in ready if offset is None], rejected

    def drop_pending(self, source: object) -> int:
        """``source`` ended: drop the events that wait in the causal buffer and
        that only it sent (their parents would have come from it); returns how
        many. One pass over the buffer, once per ended session."""
        dropped = 0
        for key, sources in list(self._brought.items()):
            if source not in sources:
                continue
            if len(sources) > 1:
                self._brought[key] = tuple(s for s in sources if s != source)
            elif self._unhold(*key):
                dropped += 1
        if not self._brought:
            self._brought = {}   # a dict keeps its largest table: let it go
        return dropped

    @property
    def pending_bytes(self) -> int:
        """Serialized size of the events from peers waiting in the causal buffer."""
        return self._pending_bytes

    # -- internals: causal buffer and index --------------------------------
    def _bound_bytes(self, held: List[Tuple[object, Event]], rejected: List[Tuple[object, str]]) -> None:
        """Count the serialized size of this batch's events that still wait
        (only those: most events never wait), then refuse the batch's last
        ones while the buffer is over ``limits.MAX_PENDING_BYTES``."""
        for _, event in held:
            key = (event.origin, event.seq)
            if key not in self._sizes and self._pending.get(event.origin, {}).get(event.seq, (None,))[0] is event:
                self._sizes[key] = len(event.to_json().encode("utf-8"))
                self._pending_bytes += self._sizes[key]
        while self._pending_bytes > limits.MAX_PENDING_BYTES and held:
            item, event = held.pop()
            if self._unhold(event.origin, event.seq):
                rejected.append((item, f"causal buffer full ({limits.MAX_PENDING_BYTES} bytes of events wait "
                                       "for parents)"))

    def _hold(self, event: Event, offset: Optional[int], source: object = None) -> None:
        self._pending.setdefault(event.origin, {})[event.seq] = (event, offset)
        self._pending_count += 1
        if offset is not None:
            self._unindexed.add(offset)
        if source is not None:
            self._brought[(event.origin, event.seq)] = (source,)

    def _unhold(self, origin: str, seq: int) -> bool:
        """Take one waiting event out of the causal buffer, unapplied; False if it was not there."""
        self._brought.pop((origin, seq), None)
        self._pending_bytes -= self._sizes.pop((origin, seq), 0)
        waiting = self._pending.get(origin, {})
        entry = waiting.pop(seq, None)
        if entry is None:
            return False
        self._unindexed.discard(entry[1])
        self._pending_count -= 1
        if not waiting:
            del self._pending[origin]
        return True

    def _release(self) -> List[Tuple[Event, Optional[int]]]:
        """Take every buffered event whose turn has come, in a causal order."""
        ready: List[Tuple[Event, Optional[int]]] = []
        advanced: Dict[str, int] = {}

        def known(event_id: str) -> bool:
            origin, seq = parse_event_id(event_id)
            return seq <= len(self._offsets.get(origin, ())) + advanced.get(origin, 0)

        progress = True
        while progress:
            progress = False
            for origin in list(self._pending):
                waiting = self._pending[origin]
                while True:
                    next_seq = len(self._offsets.get(origin, ())) + advanced.get(origin, 0) + 1
                    entry = waiting.get(next_seq)
                    if entry is None or not all(known(p) for p in entry[0].parents):
                        break
                    del waiting[next_seq]
                    self._brought.pop((origin, next_seq), None)
                    self._pending_bytes -= self._sizes.pop((origin, next_seq), 0)
                    self._pending_count -= 1
                    ready.append(entry)
                    advanced[origin] = advanced.get(origin, 0) + 1
                    progress = True
                if not waiting:
                    del self._pending[origin]
        return ready

    def _commit(self, entries: List[Tuple[Event, Optional[int]]], *, durable: bool, save: bool = True) -> None:
        """Append the entries that are not in the log yet, then index all of them
        in order; the index is saved now, or (``save=False``) at the next ``sync``."""
        if not entries:
            return
        new = [event for event, offset in entries if offset is None]
        written = iter(self._log.append(new, durable=durable)) if new else iter(())
        for event, offset in entries:
            offset = next(written) if offset is None else offset
            self._add(event, offset)
            self._remember(offset, event)
        if save:
            self._save_index()

    def _add(self, event: Event, offset: int) -> None:
        """Index one event (in memory and in the index's pending heads)."""
        self._unindexed.discard(offset)
        offsets = self._offsets.get(event.origin)
        if offsets is None:
            offsets = self._offsets[event.origin] = array("q")
        offsets.append(offset)
        if event.lamport > self._lamport:
            self._lamport = event.lamport
        superseded = {self._offset_of(p) for p in event.parents}
        self._index.add_head(event.path, offset, event.id, superseded)

    def _is_next(self, event: Event) -> bool:
        return event.seq == len(self._offsets.get(event.origin, ())) + 1 and all(self.knows(p) for p in event.parents)

    def _offset_of(self, event_id: str) -> Optional[int]:
        origin, seq = parse_event_id(event_id)
        offsets = self._offsets.get(origin)
        return offsets[seq - 1] if offsets is not None and seq <= len(offsets) else None

    def _read(self, offset: int) -> Event:
        event = self._cache.get(offset)
        if event is None:
            event = self._log.read_at(offset)
            self._remember(offset, event)
        else:
            self._cache.move_to_end(offset)
        return event

    def _remember(self, offset: int, event: Event) -> None:
        self._cache[offset] = event
        if len(self._cache) > EVENT_CACHE:
            self._cache.popitem(last=False)

    def _replay(self, start: int) -> int:
        """Index the log from byte ``start``; returns how many events were indexed.
        A long replay (a rebuild) saves the index every ``limits.INDEX_REPLAY_FLUSH``
        changed paths, so its memory stays bounded."""
        count, save_at = 0, limits.INDEX_REPLAY_FLUSH
        for offset, event in self._log.iter_from(start, self._log.size):
            if self.knows(event.id):
                if self._offset_of(event.id) != offset:
                    log.warning("events.jsonl: duplicate event %s at byte %d ignored", event.id, offset)
                continue   # (else indexed already: the database covers more than it says)
            if event.seq in self._pending.get(event.origin, ()):
                log.warning("events.jsonl: duplicate event %s at byte %d ignored", event.id, offset)
                continue
            if not self._pending and self._is_next(event):  # the log is in causal order: the usual case
                self._add(event, offset)
                count += 1
            else:
                self._hold(event, offset)
                ready = self._release()
                for ready_event, ready_offset in ready:
                    self._add(ready_event, ready_offset)
                count += len(ready)
            if len(self._index.pending) >= save_at:
                self._save_index(covered=start)
                save_at = len(self._index.pending) + limits.INDEX_REPLAY_FLUSH   # (a failed save: not per event)
        if self._pending_count:
            log.warning("events.jsonl: %d events wait for missing parents (a corrupt line?)", self._pending_count)
        return count

    # -- the index's database ------------------------------------------------
    def _open_index(self, read_only: bool) -> int:
        """Open ``.p2p/index.db`` and check it against the log; returns the log
        offset to replay from. A database that cannot be used is rebuilt (0)."""
        path = self.home / ".p2p" / INDEX_NAME
        if not read_only:
            try:
                (self.home / ".p2p" / OLD_SNAPSHOT_NAME).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("%s not removed (%s): it is no longer used", OLD_SNAPSHOT_NAME, exc)
        reason = "is missing"
        if path.exists():
            index = None
            try:
                index = IndexDB.open(path, read_only=read_only)
                start = self._check_index(index)
                self._index = index
                return start
            except (sqlite3.Error, BadIndex) as exc:
                reason = f"cannot be used ({exc})"
                if index is not None:
                    index.close()
                self._offsets, self._lamport = {}, 0
        if self._log.size:
            log.warning("%s %s: rebuilding it from events.jsonl", path, reason)
        if read_only:
            self._index = IndexDB.in_memory()
            return 0
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            name.unlink(missing_ok=True)
        try:
            self._index = IndexDB.open(path)
        except (sqlite3.Error, OSError) as exc:
            log.warning("%s cannot be created (%s): the index stays in memory until the next start", path, exc)
            self._index = IndexDB.in_memory()
        return 0

    def _check_index(self, index: IndexDB) -> int:
        """Load the offsets if the database covers a prefix of this log (else ``BadIndex``); returns ``covered``."""
        end, covered = index.meta("end") or 0, index.meta("covered") or 0
        if not isinstance(end, int) or not isinstance(covered, int) or not 0 <= covered <= end:
            raise BadIndex(f"covers bytes {covered!r}..{end!r}")
        if end > self._log.size:
            self._log.refresh()  # a reader beside a running writer: the database may be newer
        if end > self._log.size:
            raise BadIndex(f"it is ahead of the log (it covers {end} bytes, events.jsonl has {self._log.size}: "
                           "a crash cut the log's unsynced tail)")
        if end:
            line_start = index.meta("end_line_offset")
            line = self._log.read_bytes(line_start, end - line_start) if isinstance(line_start, int) else b""
            if (self._log.last_line_start(end) != line_start or not line.endswith(b"\n")
                    or hashlib.sha256(line).hexdigest() != index.meta("end_line_sha256")):
                raise BadIndex("it indexes another log (its last line differs from events.jsonl's)")
        elif not index.is_empty():
            raise BadIndex("it holds offsets but covers no log")
        self._offsets = index.load_offsets()
        if any(values and values[-1] >= end for values in self._offsets.values()):
            raise BadIndex("it holds offsets beyond the log it covers")
        self._lamport = index.meta("lamport") or 0
        return covered

    def _save_index(self, covered: Optional[int] = None) -> None:
        """Save the index's changes with the log prefix they cover, in one
        transaction; a failure is warned about once and retried with the next batch."""
        if not self._index.writable or self._log.read_only:
            return
        size = self._log.size
        line_start = self._log.last_line_start(size)
        if covered is None:
            covered = min(self._unindexed, default=size)
        meta = {"covered": covered, "end": size, "end_line_offset": line_start, "lamport": self._lamport,
                "end_line_sha256": hashlib.sha256(self._log.read_bytes(line_start, size - line_start)).hexdigest()}
        try:
            self._index.flush(self._offsets, meta)
        except (sqlite3.Error, OSError) as exc:
            if not self._index_failing:
                log.warning("history index not saved (%s): kept in memory, saved with a later batch", exc)
            self._index_failing = True
            return
        self._index_failing = False
