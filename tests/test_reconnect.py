"""A reconnecting peer gets in at once: the newer channel from the same
initiator replaces the older one (docs/PROTOCOL.md, "One channel per pair").

The rule is the pure ``p2p.net.peers.resolve``; the registry applies it. The
property test plays both ends of a pair through any interleaving of
handshakes completing, closes reaching the other end, restarts and idle
timeouts, and checks both ends keep the same single channel. The real-process
test drops a link without a FIN (a relay in the test process stops
forwarding and keeps both sockets open), kills the initiator with SIGKILL and
starts it again with the same home and port: it must sync again within
seconds, not after IDLE_TIMEOUT.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import string
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from p2p import limits
from p2p.net.peers import KEEP_BOTH, KEEP_NEW, KEEP_OLD, PeerRegistry, resolve

from peers import Peer, wait_until

A = "A" * 32
B = "B" * 32
TWO = "2" * 32           # digits sort before letters in byte order (not in base32 value order)
RECONNECT_WAIT = 10.0    # well under IDLE_TIMEOUT (35 s); today's main needs > 35 s


class FakeSession:
    ids = itertools.count(1)

    def __init__(self, initiator_id: str):
        self.initiator_id = initiator_id
        self.cid = next(self.ids)

    def __repr__(self):
        return f"S{self.cid}({self.initiator_id[0]})"


# -- the rule --------------------------------------------------------------------

def test_different_initiators_keep_the_channel_dialled_by_the_smaller_id():
    assert resolve(A, old_initiator=B, new_initiator=A) == KEEP_NEW
    assert resolve(A, old_initiator=A, new_initiator=B) == KEEP_OLD
    assert resolve(B, old_initiator=B, new_initiator=A) == KEEP_NEW
    assert resolve(B, old_initiator=A, new_initiator=B) == KEEP_OLD


def test_ids_compare_as_canonical_bytes_so_digits_come_before_letters():
    assert resolve(A, old_initiator=A, new_initiator=TWO) == KEEP_NEW
    assert resolve(TWO, old_initiator=TWO, new_initiator=A) == KEEP_OLD


def test_same_initiator_the_responder_keeps_the_newer_and_the_initiator_waits():
    assert resolve(B, old_initiator=A, new_initiator=A) == KEEP_NEW     # B is the responder
    assert resolve(A, old_initiator=A, new_initiator=A) == KEEP_BOTH    # A dialled both


def test_the_responder_replaces_a_dead_channel_from_the_same_initiator_at_once():
    registry = PeerRegistry()
    old, new = FakeSession(A), FakeSession(A)
    assert registry.attach(A, old, 1.0, me=B) == []
    assert registry.attach(A, new, 2.0, me=B) == [old]
    assert registry.peers[A].session is new
    assert registry.detach(A, old) is False           # the old one's end changes nothing
    assert registry.sessions() == [new]


def test_the_initiator_keeps_its_older_channel_until_the_responder_closes_one():
    registry = PeerRegistry()
    first, second = FakeSession(A), FakeSession(A)
    assert registry.attach(B, first, 1.0, me=A) == []
    assert registry.attach(B, second, 2.0, me=A) == []
    assert registry.sessions() == [second, first]     # both live: broadcasts reach the survivor
    assert registry.detach(B, second) is False        # the responder closed the newer: the older takes over
    assert registry.peers[B].session is first
    assert registry.detach(B, first) is True
    assert registry.sessions() == []


def test_the_peer_smaller_channel_beats_every_channel_of_ours():
    registry = PeerRegistry()
    ours1, ours2, theirs = FakeSession(B), FakeSession(B), FakeSession(A)
    registry.attach(A, ours1, 1.0, me=B)
    registry.attach(A, ours2, 2.0, me=B)
    assert set(registry.attach(A, theirs, 3.0, me=B)) == {ours1, ours2}
    assert registry.sessions() == [theirs]


def test_no_redial_of_an_address_whose_peer_is_connected_by_another():
    registry = PeerRegistry()
    registry.reached(("10.0.0.1", 9998), A)
    registry.attach(A, FakeSession(B), 1.0, me=B)
    assert not registry.may_dial(("10.0.0.1", 9998), static=True, now=0.0)
    assert registry.may_dial(("10.0.0.2", 9998), static=True, now=0.0)


# -- both ends of a pair, any interleaving ------------------------------------------

class End:
    def __init__(self, me: str, peer: str):
        self.me, self.peer = me, peer
        self.registry = PeerRegistry()
        self.state = {}     # channel -> "open" | "closed" (absent: handshake not done here)
        self.dead = set()   # open channels whose other end restarted: only a timeout ends them


class Pair:
    """Channels between two ends: each handshake completes at the responder
    first, then at the initiator; a close reaches the other end later."""

    def __init__(self, a: str, b: str):
        self.ends = {a: End(a, b), b: End(b, a)}
        self.channels = []
        self.notices = []        # (end id, channel): the other end closed it
        self.broken = set()      # channels whose handshake can no longer complete (an end restarted)
        self.stalled = False     # a live channel lost to a dead one (the documented wait for IDLE_TIMEOUT)

    def other(self, end_id: str) -> str:
        return self.ends[end_id].peer

    def actions(self, grow: bool):
        out = []
        for c in self.channels:
            responder, initiator = self.ends[self.other(c.initiator_id)], self.ends[c.initiator_id]
            if c not in self.broken and c not in responder.state:
                out.append(("done", responder.me, c))
            elif c not in self.broken and c not in initiator.state:
                out.append(("done", initiator.me, c))
        out += [("notice", i) for i in range(len(self.notices))]
        out += [("timeout", e.me, c) for e in self.ends.values() for c in sorted(e.dead, key=lambda c: c.cid)]
        if grow:
            out += [("new", end_id) for end_id in self.ends] + [("restart", end_id) for end_id in self.ends]
        return out

    def do(self, action) -> None:
        kind = action[0]
        if kind == "new":
            self.channels.append(FakeSession(action[1]))
        elif kind == "done":
            self._attach(self.ends[action[1]], action[2])
        elif kind == "notice":
            end_id, c = self.notices.pop(action[1])
            self._closed(self.ends[end_id], c)
        elif kind == "timeout":
            end = self.ends[action[1]]
            end.dead.discard(action[2])
            self._close(end, action[2], notify=False)
        elif kind == "restart":
            self._restart(action[1])

    def _attach(self, end: End, c) -> None:
        end.state[c] = "open"
        closing = end.registry.attach(end.peer, c, 0.0, end.me)
        if c in closing and end.registry.peers[end.peer].session in end.dead:
            self.stalled = True
        for s in closing:
            self._close(end, s, notify=True)

    def _close(self, end: End, c, notify: bool) -> None:
        end.state[c] = "closed"
        end.registry.detach(end.peer, c)
        if notify:
            self.notices.append((end.peer, c))

    def _closed(self, end: End, c) -> None:
        if end.state.get(c) == "open":
            self._close(end, c, notify=False)
        elif c not in end.state:
            end.state[c] = "closed"          # closed before this end finished its handshake

    def _restart(self, end_id: str) -> None:
        self.ends[end_id] = fresh = End(end_id, self.other(end_id))
        peer = self.ends[fresh.peer]
        for c in self.channels:
            if peer.state.get(c) == "open":
                peer.dead.add(c)             # no FIN: the other end learns only by its idle timeout
            self.broken.add(c)               # a handshake still under way fails
            fresh.state[c] = "closed"        # the old process's channels are gone
        self.notices = [(e, c) for e, c in self.notices if e != end_id]


device_ids = st.text(alphabet=string.ascii_uppercase + "234567", min_size=32, max_size=32)


@settings(max_examples=int(os.environ.get("P2P_FUZZ_EXAMPLES", "400")), deadline=None)
@given(st.data())
def test_both_ends_agree_on_the_one_surviving_channel(data):
    a = data.draw(device_ids)
    b = data.draw(device_ids.filter(lambda x: x != a))
    pair = Pair(a, b)
    for _ in range(data.draw(st.integers(1, 30))):
        actions = pair.actions(grow=len(pair.channels) < 6)
        if not actions:
            break
        pair.do(data.draw(st.sampled_from(actions)))
    while pair.actions(grow=False):              # let every handshake, close and timeout happen
        pair.do(data.draw(st.sampled_from(pair.actions(grow=False))))

    left, right = pair.ends.values()
    open_left = {c for c, s in left.state.items() if s == "open"}
    open_right = {c for c, s in right.state.items() if s == "open"}
    assert open_left == open_right and len(open_left) <= 1
    assert left.registry.sessions() == right.registry.sessions() == list(open_left)
    if not pair.stalled and any(c not in pair.broken for c in pair.channels):
        assert len(open_left) == 1, "channels made since the last restart, yet none survives"


# -- real processes: a link dropped without a FIN ------------------------------------

class FreezableRelay:
    """A TCP relay on loopback: each accepted connection is forwarded to
    ``target``. ``freeze()`` stops forwarding on the connections open now and
    keeps their sockets open: to both ends the link is silent, as a dropped
    network, with no FIN and no RST. Connections accepted later work."""

    def __init__(self, target):
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.pairs = []          # [client, upstream, frozen flag]
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            pair = [client, upstream, threading.Event()]
            self.pairs.append(pair)
            thread = threading.Thread(target=self._pump, args=(pair,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _pump(self, pair) -> None:
        client, upstream, frozen = pair
        peer_of = {client: upstream, upstream: client}
        while not self.stopped.is_set() and not frozen.is_set():
            readable, _, _ = select.select([client, upstream], [], [], 0.2)
            if frozen.is_set():
                break
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:         # a real end closed: pass it on
                    for s in (client, upstream):
                        s.close()
                    return
                peer_of[sock].sendall(data)
        self.stopped.wait()          # frozen: hold both sockets open, silent, until the test ends

    def freeze(self) -> None:
        for pair in self.pairs:
            pair[2].set()

    def close(self) -> None:
        self.stopped.set()
        self.server.close()
        for thread in self.threads:
            thread.join(5)
        for client, upstream, _ in self.pairs:
            client.close()
            upstream.close()


@pytest.fixture
def relay_to(request):
    relays = []

    def make(peer: Peer) -> FreezableRelay:
        relays.append(FreezableRelay((peer.host, peer.port)))
        return relays[-1]

    yield make
    for relay in relays:
        relay.close()


@pytest.mark.slow
def test_an_initiator_killed_behind_a_dead_link_reconnects_at_once(make_peer, relay_to):
    b = make_peer("b").start()
    relay = relay_to(b)
    a = make_peer("a", peers=[f"127.0.0.1:{relay.port}"]).start()
    a.write("before.txt", b"before")
    wait_until(lambda: b.has("before.txt", b"before"), 20, "before.txt on b")

    relay.freeze()            # the link drops: neither end hears a FIN
    a.kill()                  # and the initiator dies (SIGKILL): b still holds the old channel
    a.start()                 # same home, same port, same identity
    started = time.monotonic()
    a.write("after.txt", b"after")
    wait_until(lambda: b.has("after.txt", b"after"), RECONNECT_WAIT, "after.txt on b well before IDLE_TIMEOUT")
    assert time.monotonic() - started < limits.IDLE_TIMEOUT
    assert "said bye: duplicate channel" not in a.output()      # b did not refuse the new channel
    b.write("back.txt", b"back")
    wait_until(lambda: a.has("back.txt", b"back"), RECONNECT_WAIT, "back.txt on a")
