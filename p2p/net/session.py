"""One authenticated channel with one peer: a reader greenlet and a writer greenlet.

The reader is a small loop around ``channel.recv`` and ``decode_message``
that dispatches each typed message; the writer is the only sender on the
channel, so frames never interleave and the encryption counters stay in
order. On connect each side sends Hello and its version-vector Summary; a
Summary is answered with exactly the events the other lacks (the writer
streams them from the log in batches). After that the broadcaster pushes new
events. Block requests are pipelined and bounded per peer (count and bytes),
the small ones that wait for the writer at the same time sent in one
BlockRequests frame and answered in one BlocksData, both ways: the answers
we owe a peer hold a reply budget until the writer has sent them, so a peer that sends requests but reads no answers stops being
read (TCP pushes back) instead of filling our memory. A peer that accepts no
frame, or sends none, for ``limits.IDLE_TIMEOUT`` is dropped. Any
``WireError`` or ``ChannelClosed`` ends this session only.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from typing import NamedTuple

import gevent
from gevent.event import AsyncResult, Event
from gevent.pool import Group

from p2p import limits
from p2p.blocks.store import BlockMissing, CorruptBlock
from p2p.net.rejections import Rejections
from p2p.transport import ChannelClosed
from p2p.wire.errors import WireError
from p2p.wire.frame import Frame
from p2p.wire.text import display_name
from p2p.wire.messages import (BlockData, BlockRequest, BlockRequests, BlocksData, BlockStatus, Bye, Error, Events,
                               Have, Hello, ListReply, ListRequest, Neighbors, Ping, Pong, Summary, decode_message,
                               encode_message, event_batches)

log = logging.getLogger("p2p.session")

BACKFILL = object()       # writer-queue marker: stream what the peer lacks
ASKS = object()           # writer-queue marker: send the small block requests waiting, together
PROTOCOL_VERSION = 3       # 2: the Have message (0x0D); 3: content-defined blocks (docs/EVENTS.md), BlockRequests
                           # and BlocksData (0x0E, 0x0F)


class SessionClosed(Exception):
    pass


def forged_block(wanted: str) -> str:
    """What a peer sent instead of the block ``wanted`` (sha256 hex), said when it is dropped."""
    return f"a block whose content does not match the hash we asked for, {wanted[:12]}"


class Budget:
    """Bounded outstanding work: at most ``count`` items and about ``size``
    bytes. Waiters are served in order, and a release wakes only the first
    (not all of them: a large file's thousands of blocks queue here, and
    waking every one per release cost O(blocks^2) switches in the hub).
    ``close`` wakes every waiter with SessionClosed."""

    def __init__(self, count: int, size: int):
        self.count, self.size = count, size
        self.used_count = self.used_size = 0
        self.closed = False
        self._waiters: deque = deque()   # (bytes wanted, Event), first come first served

    def _fits(self, n: int) -> bool:
        return self.used_count < self.count and not (self.used_count and self.used_size + n > self.size)

    def acquire(self, n: int) -> None:
        if not self._waiters and not self.closed and self._fits(n):
            self._take(n)
            return
        waiter = (n, Event())
        self._waiters.append(waiter)
        try:
            while not self.closed and not (self._waiters[0] is waiter and self._fits(n)):
                waiter[1].clear()
                waiter[1].wait()
        finally:
            first = self._waiters and self._waiters[0] is waiter
            self._waiters.remove(waiter)   # the first, unless this greenlet was killed while it waited
            if first:
                self._wake_first()
        if self.closed:
            raise SessionClosed("the session is closed")
        self._take(n)

    def _take(self, n: int) -> None:
        self.used_count += 1
        self.used_size += n

    def _wake_first(self) -> None:
        if self._waiters:
            self._waiters[0][1].set()

    def release(self, n: int, count: int = 1) -> None:
        self.used_count -= count
        self.used_size -= n
        self._wake_first()

    def close(self) -> None:
        self.closed = True
        for _n, event in self._waiters:
            event.set()


class Reply(NamedTuple):
    """A frame answering a peer's requests (``count`` of them), and the budget
    it holds until written."""
    frame: Frame
    budget: Budget
    reserved: int
    count: int = 1


class Session:
    """One authenticated channel with a peer. ``history`` is read for what to
    send (Summary, backfill); ``node`` is the session's host: what the
    session reports and asks (events received, the peer's hello, summary and
    Have, a block to serve, a listing, the session's end) goes through its
    named methods."""

    def __init__(self, node, history, channel, peer_id: str, address, initiator_id: str):
        self.node = node
        self.history = history
        self.channel = channel
        self.peer_id = peer_id
        self.address = address
        self.initiator_id = initiator_id
        self.peer_vv: dict = {}          # what we know the peer has
        self.neighbors: frozenset = frozenset()  # the peers it has a channel with (its Neighbors)
        self.ready = False               # the peer's backfill is queued: broadcasts may flow
        self.resync = False              # we dropped events for it: backfill again
        self.name = ""
        self.listen_port = None
        self.outq: deque = deque()       # frames to write, in order (events, requests, small answers)
        self.bulkq: deque = deque()      # large block answers: written when outq is empty
        self._wake = Event()
        self.closed = Event()
        self.bytes_sent = 0
        self.bytes_received = 0
        self._ids = itertools.count(1)
        self._pending: dict = {}
        self._asked: dict = {}           # block request id -> (hash, size, checked_by_caller) we asked for
        self._small_asks: list = []      # small BlockRequests waiting for the writer: sent in one frame
        self._budget = Budget(limits.MAX_REQUESTS_PER_PEER, limits.MAX_BYTES_IN_FLIGHT)
        self._small_budget = Budget(limits.MAX_REQUESTS_PER_PEER, limits.MAX_BYTES_IN_FLIGHT)
        # What we owe the peer, until written: blocks mirror its request budget,
        # so an honest peer never reaches it; other answers (pongs, listings,
        # errors) have their own, which an honest peer never reaches either.
        self._block_replies = Budget(limits.MAX_SERVING_PER_PEER, limits.MAX_BYTES_IN_FLIGHT)
        self._small_block_replies = Budget(limits.MAX_SERVING_PER_PEER, limits.MAX_BYTES_IN_FLIGHT)
        self._other_replies = Budget(limits.MAX_SERVING_PER_PEER, limits.MAX_BYTES_IN_FLIGHT)
        self._serving = Group()
        self._writer = None
        self._summary_due = False
        self.rejections = Rejections()   # the events it sent that we rejected (the node logs and counts them)
        self.ended_by = ""               # why the peer or the wire ended the channel, if either did

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> None:
        """Run the session in the calling greenlet (the reader) until it ends."""
        self._writer = gevent.spawn(self._write_loop)
        self.send(Hello(name=self.node.name, port=self.node.listen_port, version=PROTOCOL_VERSION))
        self.send(Summary(vv=self.history.vv))
        self.send(Neighbors(ids=self.node.neighbor_ids()))
        try:
            self._read_loop()
        except ChannelClosed as exc:
            log.info("peer %s closed the channel", self.peer_id[:7])
            self.ended_by = self.ended_by or f"the peer closed the channel: {exc}"
        except SessionClosed:
            pass  # closed while waiting for a reply budget; the closer said why
        except WireError as exc:
            self._dropping(exc)
        except (OSError, gevent.Timeout) as exc:
            log.info("channel with %s ended: %s", self.peer_id[:7], exc)
            self.ended_by = f"channel ended: {exc or type(exc).__name__}"
        finally:
            self.close()

    def _dropping(self, exc: WireError) -> None:
        log.warning("dropping channel with %s: %s: %s", self.peer_id[:7], type(exc).__name__, exc)
        self.ended_by = f"{type(exc).__name__}: {exc}"

    def drop(self, exc: WireError) -> None:
        """End the session for bad input found outside the reader (a large
        block that its caller verified off the hub, ``request_block``)."""
        if not self.closed.is_set():
            self._dropping(exc)
            self.close()

    def close(self, reason: str = "") -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if reason:
            try:
                self.channel.send(encode_message(Bye(reason=reason)))
            except Exception:
                pass
        self.channel.close()
        for budget in (self._budget, self._small_budget, self._block_replies, self._small_block_replies,
                       self._other_replies):
            budget.close()
        for result in self._pending.values():
            result.set_exception(SessionClosed(self.peer_id))
        self._pending.clear()
        self._serving.kill(block=False)
        if self._writer is not None and self._writer is not gevent.getcurrent():
            self._writer.kill(block=False)
        self.node.session_ended(self)

    # -- sending ---------------------------------------------------------------
    def send(self, msg) -> None:
        self._enqueue(encode_message(msg))

    def _enqueue(self, item, bulk: bool = False) -> None:
        (self.bulkq if bulk else self.outq).append(item)
        self._wake.set()

    def send_events(self, events) -> None:
        """Queue events for the peer (the broadcaster's entry point)."""
        if len(self.outq) > limits.SEND_QUEUE_FRAMES:
            self.resync = True    # too far behind: it gets a backfill instead
            return
        for batch in event_batches(e.to_dict() for e in events):
            self._enqueue(encode_message(Events(events=batch)))
        for e in events:
            self._saw(e.origin, e.seq)

    def _saw(self, origin: str, seq: int) -> None:
        if self.peer_vv.get(origin, 0) < seq:
            self.peer_vv[origin] = seq

    def covers(self, event) -> bool:
        return self.peer_vv.get(event.origin, 0) >= event.seq

    def _write_loop(self) -> None:
        try:
            while True:
                item = self._next_item()
                if item is BACKFILL:
                    self._backfill()
                    continue
                if item is ASKS:
                    self._send_asks()
                    continue
                if isinstance(item, Reply):
                    self._write(item.frame)
                    item.budget.release(item.reserved, item.count)
                else:
                    self._write(item)
                if self.resync and not self.outq:
                    self.resync = False
                    self._backfill()
        except gevent.Timeout:
            log.warning("dropping %s: it accepted nothing for %.0fs", self.peer_id[:7], limits.IDLE_TIMEOUT)
            gevent.spawn(self.close)
        except (OSError, WireError, ChannelClosed) as exc:
            log.info("writing to %s failed: %s", self.peer_id[:7], exc)
            gevent.spawn(self.close)

    def _next_item(self):
        """The next frame to write: urgent ones first, then large block answers;
        a Ping when there has been nothing to write for PING_INTERVAL."""
        while True:
            if self.outq:
                return self.outq.popleft()
            if self.bulkq:
                return self.bulkq.popleft()
            self._wake.clear()
            if not self._wake.wait(timeout=limits.PING_INTERVAL):
                return encode_message(Ping(nonce=int(time.time())))

    def _write(self, frame: Frame) -> None:
        """Send one frame; raises gevent.Timeout if the peer takes none for IDLE_TIMEOUT."""
        with gevent.Timeout(limits.IDLE_TIMEOUT):
            self.channel.send(frame)
        self.bytes_sent += len(frame.payload) + 6

    def _backfill(self) -> None:
        batch = []
        vv = dict(self.peer_vv)
        for event in self.history.missing_for(vv):
            batch.append(event)
            if len(batch) >= limits.MAX_EVENTS_PER_BATCH:
                self._send_batch_now(batch)
                batch = []
        if batch:
            self._send_batch_now(batch)

    def _send_batch_now(self, batch) -> None:
        for dicts in event_batches(e.to_dict() for e in batch):
            self._write(encode_message(Events(events=dicts)))
        for e in batch:
            self._saw(e.origin, e.seq)
        gevent.idle()

    # -- receiving -------------------------------------------------------------
    def _read_loop(self) -> None:
        handlers = {
            Hello: self._on_hello, Summary: self._on_summary, Events: self._on_events,
            BlockRequest: self._on_block_request, BlockData: self._on_block_data,
            BlockRequests: self._on_block_requests, BlocksData: self._on_blocks_data,
            Ping: self._on_ping, Pong: lambda msg: None, Error: self._on_error, Bye: self._on_bye,
            ListRequest: self._on_list_request, ListReply: self._on_list_reply,
            Neighbors: self._on_neighbors, Have: lambda msg: self.node.peer_has(self, msg),
        }
        while not self.closed.is_set():
            with gevent.Timeout(limits.IDLE_TIMEOUT):
                frame = self.channel.recv()
            self.bytes_received += len(frame.payload) + 6
            msg = decode_message(frame)
            self.node.peer_seen(self)
            handler = handlers.get(type(msg))
            if handler is None:
                raise ChannelClosed(f"unexpected {type(msg).__name__} after the handshake")
            handler(msg)

    def _on_hello(self, msg: Hello) -> None:
        if msg.version != PROTOCOL_VERSION:   # no silent mixing: one line, then the channel goes
            reason = f"protocol version {msg.version}, this peer speaks {PROTOCOL_VERSION}: upgrade the older one"
            log.warning("peer %s speaks %s", self.peer_id[:7], reason)
            self.close(f"protocol version {PROTOCOL_VERSION} only")
            raise SessionClosed(reason)
        self.name = display_name(msg.name)   # shown by status, logs, ls: no terminal escapes
        self.listen_port = msg.port
        self.node.peer_hello(self)

    def _on_summary(self, msg: Summary) -> None:
        if self.node.own_events_elsewhere(self, msg.vv.get(self.node.device_id, 0)):
            return   # the peer holds more of our events than we do: we took a new id, sessions close
        self.peer_vv = dict(msg.vv)
        self.node.peer_summary(self, msg.vv)
        self._enqueue(BACKFILL)
        self.ready = True

    def _on_events(self, msg: Events) -> None:
        gaps, validated = self.node.on_remote_events(self, msg.events)
        # what the peer has, from the events the history validated (took, holds
        # or had) only: a rejected one's origin and seq would grow peer_vv and
        # make us withhold real events that it claims to have
        for raw in validated:
            self._saw(raw["origin"], raw["seq"])
        if gaps and not self._summary_due:
            self._summary_due = True
            gevent.spawn_later(1.0, self._ask_again)

    def _ask_again(self) -> None:
        """Some events wait for missing predecessors: ask this peer for them."""
        self._summary_due = False
        if not self.closed.is_set():
            self.send(Summary(vv=self.history.vv))

    def _answer(self, msg) -> None:
        """Queue a small answer; waits (the reader stops reading) while the
        peer leaves too many of them unread."""
        frame = encode_message(msg)
        self._other_replies.acquire(len(frame.payload))
        self._enqueue(Reply(frame, self._other_replies, len(frame.payload)))

    def _on_neighbors(self, msg: Neighbors) -> None:
        self.neighbors = frozenset(msg.ids)

    def _on_ping(self, msg: Ping) -> None:
        self._answer(Pong(nonce=msg.nonce))

    def _on_error(self, msg: Error) -> None:
        log.warning("peer %s reports %s: %s", self.peer_id[:7], msg.code, msg.message)

    def _on_bye(self, msg: Bye) -> None:
        log.info("peer %s said bye: %s", self.peer_id[:7], msg.reason)
        self.ended_by = f"the peer said: {msg.reason}"
        raise ChannelClosed(msg.reason)

    def _on_list_request(self, msg: ListRequest) -> None:
        self._answer(ListReply(req_id=msg.req_id, entries=tuple(self.node.list_entries(msg.path))))

    def _on_list_reply(self, msg: ListReply) -> None:
        result = self._pending.pop(("list", msg.req_id), None)
        if result is not None:
            result.set(msg.entries)

    # -- blocks ------------------------------------------------------------------
    def _on_block_request(self, msg: BlockRequest) -> None:
        if msg.size > limits.MAX_BLOCK:
            self._answer(Error(code="request-too-large", message=f"block of {msg.size} bytes"))
            return
        # the reader waits while the peer reads no blocks; small blocks have
        # their own budget so they never queue behind a large file's
        self._reply_budget(msg.size).acquire(msg.size)
        self._serving.spawn(self._serve_block, msg)

    def _reply_budget(self, size: int) -> Budget:
        return self._small_block_replies if size <= limits.SMALL_BLOCK else self._block_replies

    def _serve_block(self, msg: BlockRequest) -> None:
        """Queue the reply."""
        self._enqueue(Reply(encode_message(self._block_reply(msg)), self._reply_budget(msg.size), msg.size),
                      bulk=msg.size > limits.SMALL_BLOCK)

    def _block_reply(self, msg: BlockRequest, found: dict = None) -> BlockData:
        """The answer to one request (its block from ``found`` when given: read
        with others); a block of another size than asked is not served, as it
        would overrun the reply budget reserved for it."""
        try:
            data = self.node.read_block(msg.hash.hex(), msg.size) if found is None else found.get(msg.hash.hex())
        except (BlockMissing, CorruptBlock, OSError):
            data = None
        if data is not None and len(data) == msg.size:
            return BlockData(req_id=msg.req_id, status=BlockStatus.OK, hash=msg.hash, data=data)
        return BlockData(req_id=msg.req_id, status=BlockStatus.NOT_FOUND, hash=msg.hash, data=b"")

    def _on_block_requests(self, msg: BlockRequests) -> None:
        """Small blocks asked together (each at most SMALL_BLOCK: the codec
        checked) are answered together, in one BlocksData; each request holds
        its share of the small reply budget until that frame is written."""
        for request in msg.requests:
            self._small_block_replies.acquire(request.size)
        self._serving.spawn(self._serve_blocks, msg.requests)

    def _serve_blocks(self, requests) -> None:
        try:   # read together: one index query, one open per pack
            found = self.node.read_blocks([request.hash.hex() for request in requests])
        except OSError:
            found = {}
        reply = BlocksData(blocks=tuple(self._block_reply(request, found) for request in requests))
        self._enqueue(Reply(encode_message(reply), self._small_block_replies,
                            sum(request.size for request in requests), len(requests)))

    def _on_blocks_data(self, msg: BlocksData) -> None:
        """Each block is checked as if it came alone: a lie drops the peer."""
        for block in msg.blocks:
            self._on_block_data(block)

    def _on_block_data(self, msg: BlockData) -> None:
        """An answer is checked against the hash and size WE asked for (never
        against the hash the peer put in its reply): a peer that sends other
        content is dropped, and the block is fetched from another."""
        result = self._pending.pop(msg.req_id, None)
        asked = self._asked.pop(msg.req_id, None)
        if result is None or asked is None:
            return  # cancelled or unknown request: ignore
        wanted, size, checked_by_caller = asked
        if msg.status == BlockStatus.OK:
            problem = ""
            if len(msg.data) != size:
                problem = f"{len(msg.data)} bytes for the block {wanted.hex()[:12]} of {size} bytes we asked for"
            elif not checked_by_caller and self.node.digest(msg.data) != wanted:
                problem = forged_block(wanted.hex())
            if problem:
                result.set_exception(SessionClosed(f"{self.peer_id[:7]} sent {problem}"))
                raise WireError(f"peer sent {problem}")
        result.set(msg)

    def request_block(self, block_hash: str, size: int, checked_by_caller: bool = False):
        """Fetch one block from this peer: its bytes, checked against
        ``block_hash`` and ``size`` (``_on_block_data``), or None if it lacks it.
        ``checked_by_caller``: only the size is checked here; the caller hashes
        the bytes off the hub (with the write: one thread hop, and the reader
        goes on meanwhile) and ``drop``s the peer if they are not that block."""
        budget = self._small_budget if size <= limits.SMALL_BLOCK else self._budget
        budget.acquire(size)
        req_id = next(self._ids) & 0xFFFFFFFF
        try:
            if self.closed.is_set():
                raise SessionClosed(self.peer_id)
            result = AsyncResult()
            self._pending[req_id] = result
            self._asked[req_id] = (bytes.fromhex(block_hash), size, checked_by_caller)
            request = BlockRequest(req_id=req_id, size=size, hash=bytes.fromhex(block_hash))
            if size <= limits.SMALL_BLOCK:
                self._ask_small(request)
            else:
                self.send(request)
            msg = result.get(timeout=limits.IDLE_TIMEOUT)
            return msg.data if msg.status == 0 else None
        finally:
            budget.release(size)
            self._pending.pop(req_id, None)
            self._asked.pop(req_id, None)

    def _ask_small(self, request: BlockRequest) -> None:
        """Queue a small block request: those that wait for the writer at the
        same time (many small files in flight) leave in one frame."""
        if not self._small_asks:
            self._enqueue(ASKS)
        self._small_asks.append(request)

    def _send_asks(self) -> None:
        """Write the waiting small requests, MAX_BLOCKS_PER_FRAME or about
        BATCH_BYTES asked per frame (so no answer waits for many large ones)."""
        asks, self._small_asks = self._small_asks, []
        batch, asked = [], 0
        for request in asks:
            if batch and (len(batch) == limits.MAX_BLOCKS_PER_FRAME or asked + request.size > limits.BATCH_BYTES):
                self._write_asks(batch)
                batch, asked = [], 0
            batch.append(request)
            asked += request.size
        self._write_asks(batch)

    def _write_asks(self, batch: list) -> None:
        self._write(encode_message(batch[0] if len(batch) == 1 else BlockRequests(requests=tuple(batch))))

    @property
    def outstanding(self) -> int:
        return self._budget.used_count

    def list_remote(self, path: str, timeout: float = 10.0):
        req_id = next(self._ids) & 0xFFFFFFFF
        result = AsyncResult()
        self._pending[("list", req_id)] = result
        self.send(ListRequest(req_id=req_id, path=path))
        return result.get(timeout=timeout)
