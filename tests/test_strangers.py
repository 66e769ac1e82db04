"""Strangers cannot grow our memory (docs/SECURITY.md, "Bounded by
strangers").

* The table of peers heard of by discovery but never connected is bounded
  (``MAX_DISCOVERED``, ``MAX_DISCOVERED_PER_HOST``) and forgets them after
  ``PEER_EXPIRY``; dials to the peers one host announced are limited to
  ``DIALS_PER_HOST`` per ``DIAL_WINDOW``. Unit tests on the registry, then a
  real peer flooded with 30,000 forged announces from one host.
* Events a session left waiting in the causal buffer are dropped when it
  ends. Unit and property tests on History, then a real peer and a member
  that sends events whose predecessors never come.
"""

from __future__ import annotations

import gc
import json
import math
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from p2p import limits
from p2p.history.event import Event
from p2p.history.history import History
from p2p.net.announce import Announce, BadAnnounce
from p2p.net.peers import DialBudget, PeerRegistry

from peers import free_port, wait_until
from rogue import AuthenticatedRogue, dir_event, limits_hook, rss_bytes

HOST = "10.1.2.3"
FORGED = 30_000
LISTENERS = 64               # ports the forged announces name: the test counts T's dials to them
PEER_EXPIRY = 3.0            # T's, for the real-process test (16 s in production)
FLOOD_MEMORY = 16 * limits.MiB
WAITING = 5_000              # events a member leaves waiting for predecessors


def ids(count: int, above: str = "") -> list:
    """``count`` distinct canonical device ids, each greater than ``above``."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    out = []
    for n in range(count):
        digits = "".join(alphabet[(n >> (5 * i)) & 31] for i in range(6))
        out.append("Z" * 26 + digits)
    assert all(i > above for i in out)
    return out


# -- the discovered-peer table ----------------------------------------------------------

def test_one_host_lists_at_most_max_discovered_per_host():
    registry = PeerRegistry()
    listed = [registry.heard(d, "", (HOST, 9998), 0.0)[0] for d in ids(1000)]
    assert sum(info is not None for info in listed) == limits.MAX_DISCOVERED_PER_HOST
    assert len(registry.peers) == registry.strangers() == limits.MAX_DISCOVERED_PER_HOST
    other = registry.heard(ids(1)[0][:-1] + "2", "", ("10.9.9.9", 9998), 0.0)[0]
    assert other is not None                             # another host still gets in


def test_all_hosts_together_list_at_most_max_discovered(monkeypatch):
    monkeypatch.setattr(limits, "MAX_DISCOVERED", 40)
    registry = PeerRegistry()
    for n, device in enumerate(ids(200)):
        registry.heard(device, "", (f"10.0.{n // 250}.{n % 250}", 9998), 0.0)
    assert len(registry.peers) == 40


def test_peers_never_connected_expire_and_free_their_room():
    registry = PeerRegistry()
    first = ids(limits.MAX_DISCOVERED_PER_HOST + 1)
    for device in first[:-1]:
        registry.heard(device, "", (HOST, 9998), 0.0)
    assert registry.heard(first[-1], "", (HOST, 9998), 1.0) == (None, False)
    registry.heard(first[0], "", (HOST, 9998), limits.PEER_EXPIRY - 1)     # still announcing: kept
    assert registry.expire(limits.PEER_EXPIRY + 0.5) == limits.MAX_DISCOVERED_PER_HOST - 1
    assert list(registry.peers) == [first[0]]
    assert registry.heard(first[-1], "", (HOST, 9998), limits.PEER_EXPIRY + 0.5)[0] is not None


def test_a_peer_that_connected_is_no_stranger_and_never_expires():
    class Session:
        initiator_id = "A" * 32
    registry = PeerRegistry()
    device = ids(1)[0]
    registry.heard(device, "laptop", (HOST, 9998), 0.0)
    registry.attach(device, Session(), 1.0, me="A" * 32)
    assert registry.strangers() == 0
    registry.detach(device, registry.peers[device].session)
    assert registry.expire(10 * limits.PEER_EXPIRY) == 0 and registry.peers[device].name == "laptop"


def test_dial_attempts_per_host_are_bounded_per_window():
    budget = DialBudget()
    allowed = [budget.allow(HOST, t * 0.01) for t in range(1000)]          # 10 s of attempts
    windows = math.ceil(10 / limits.DIAL_WINDOW) + 1
    assert sum(allowed) <= limits.DIALS_PER_HOST * windows
    assert budget.allow("10.9.9.9", 10.0)                                  # per host


def test_a_registry_dial_of_a_discovered_address_spends_its_hosts_budget():
    registry = PeerRegistry()
    allowed = [registry.may_dial((HOST, 1000 + n), static=False, now=0.0) for n in range(100)]
    assert sum(allowed) == limits.DIALS_PER_HOST
    assert registry.may_dial((HOST, 1), static=True, now=0.0)              # static peers: not limited


def test_announces_carry_canonical_device_ids_only():
    good = ids(1)[0]
    assert Announce.decode(Announce(good, 9998, "x").encode()).device_id == good
    for bad in (good.lower(), good[:-1] + "1", good[:-1] + "8"):
        with pytest.raises(BadAnnounce):
            Announce.decode(Announce(bad, 9998, "x").encode())


# -- the causal buffer ----------------------------------------------------------------

ORIGIN = "O" * 32


def gap_events(count: int, origin: str = ORIGIN, first: int = 2) -> list:
    """Events of ``origin`` from seq ``first`` on: with seq 1 missing, all wait."""
    return [dir_event(origin, seq, f"d{seq}") for seq in range(first, first + count)]


@pytest.fixture
def history(tmp_path):
    h = History.open(tmp_path, "Q" * 32)
    yield h
    h.close()


def test_a_session_that_ends_leaves_no_event_waiting(history):
    history.merge(gap_events(500), source="s1")
    assert history.pending_count == 500
    assert history.drop_pending("s1") == 500
    assert history.pending_count == 0 and history.vv == {}
    accepted, _ = history.merge([dir_event(ORIGIN, 1, "d1")])        # nothing of it is applied later
    assert [e.seq for e in accepted] == [1]


def test_the_dropped_events_are_freed(history):
    def alive() -> int:
        return sum(isinstance(o, Event) and o.origin == ORIGIN for o in gc.get_objects())
    history.merge(gap_events(WAITING), source="s1")
    assert alive() == WAITING
    history.drop_pending("s1")
    assert alive() == 0


def test_an_event_two_sessions_sent_waits_until_both_end(history):
    events = gap_events(10)
    history.merge(events, source="s1")
    history.merge(events[:4], source="s2")
    assert history.drop_pending("s1") == 6 and history.pending_count == 4
    assert history.drop_pending("s2") == 4 and history.pending_count == 0


def test_events_merged_without_a_source_and_released_ones_are_kept(history):
    history.merge(gap_events(3, first=5))                             # no source: never dropped
    history.merge(gap_events(3, first=2), source="s1")
    accepted, _ = history.merge([dir_event(ORIGIN, 1, "d1")], source="s1")
    assert [e.seq for e in accepted] == list(range(1, 8))
    assert history.drop_pending("s1") == 0 and len(history) == 7


def test_refused_overflow_leaves_no_trace(history, monkeypatch):
    monkeypatch.setattr(limits, "MAX_PENDING_EVENTS", 5)
    _, rejected = history.merge(gap_events(8), source="s1")
    assert len(rejected) == 3 and history.pending_count == 5
    assert history.drop_pending("s1") == 5 and history.pending_count == 0


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_dropping_a_source_never_loses_what_another_source_sends(data):
    """Batches of any events from any sessions, sessions ending at any time:
    once every session has ended nothing waits, and a full resend from a new
    session fills every gap (dropping never makes an event unmergeable)."""
    events = [dir_event(o, seq, f"{o[0]}{seq}") for o in ("A" * 32, "B" * 32) for seq in range(1, 9)]
    live = ["s1", "s2", "s3"]
    with tempfile.TemporaryDirectory() as tmp:
        history = History.open(Path(tmp), "Q" * 32)
        for _ in range(data.draw(st.integers(1, 20))):
            if live and data.draw(st.booleans()):
                batch = data.draw(st.lists(st.sampled_from(events), max_size=8))
                history.merge(batch, source=data.draw(st.sampled_from(live)))
            elif live:
                ended = data.draw(st.sampled_from(live))
                live.remove(ended)
                history.drop_pending(ended)
        for source in list(live):
            history.drop_pending(source)
        assert history.pending_count == 0
        accepted, _ = history.merge(events, source="fresh")
        assert len(history) == len(events) and history.pending_count == 0
        history.close()


# -- real processes ---------------------------------------------------------------------

def status(peer) -> dict:
    out = subprocess.run([sys.executable, "-m", "p2p", "status", "--home", str(peer.home), "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class DialCounter:
    """TCP ports on 127.0.0.1 that count the connections made to them and
    close each at once (so the dialler's handshake fails and it may retry)."""

    def __init__(self, count: int):
        self.selector = selectors.DefaultSelector()
        self.servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
        self.ports = [s.getsockname()[1] for s in self.servers]
        for server in self.servers:
            server.setblocking(False)
            self.selector.register(server, selectors.EVENT_READ)
        self.dials = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            for key, _ in self.selector.select(0.2):
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                self.dials += 1
                conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        for server in self.servers:
            server.close()


@pytest.fixture
def dial_counter():
    counter = DialCounter(LISTENERS)
    yield counter
    counter.close()


@pytest.mark.slow
def test_30000_forged_announces_from_one_host_list_few_peers_and_dial_few_times(make_peer, tmp_path,
                                                                                monkeypatch, dial_counter):
    for name, value in limits_hook(tmp_path / "hook", PEER_EXPIRY=PEER_EXPIRY).items():
        monkeypatch.setenv(name, value)
    udp = free_port(socket.SOCK_DGRAM)
    t = make_peer("T", discovery=f"127.255.255.255:{udp}").start()
    forged = ids(FORGED, above=status(t)["device"])
    rss_before = rss_bytes(t.proc.pid)

    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    started = time.monotonic()
    try:
        for n, device in enumerate(forged):          # from 127.0.0.1, naming 64 ports of ours
            sender.sendto(Announce(device, dial_counter.ports[n % LISTENERS], "forged").encode(), ("127.0.0.1", udp))
            if n % 100 == 99:
                time.sleep(0.01)                      # pace: T reads them, rather than the kernel dropping most
    finally:
        sender.close()
    forged_set = set(forged)
    listed = [p for p in status(t)["peers"] if p["id"] in forged_set]
    assert 0 < len(listed) <= limits.MAX_DISCOVERED_PER_HOST
    assert rss_bytes(t.proc.pid) - rss_before < FLOOD_MEMORY

    elapsed = time.monotonic() - started
    assert 0 < dial_counter.dials <= limits.DIALS_PER_HOST * (math.ceil(elapsed / limits.DIAL_WINDOW) + 1), \
        f"{dial_counter.dials} dials in {elapsed:.1f}s"
    wait_until(lambda: not any(p["id"] in forged_set for p in status(t)["peers"]),
               PEER_EXPIRY + limits.DISCOVERY_INTERVAL + 10, "the forged peers to be forgotten")

    g = make_peer("G", discovery=f"127.255.255.255:{udp}", host="127.0.0.2").start()
    g.write("after-the-flood.txt", b"still syncing")
    wait_until(lambda: t.has("after-the-flood.txt", b"still syncing"), 30, "discovery to work after the flood")


@pytest.mark.slow
def test_a_member_that_leaves_takes_the_events_it_left_waiting(make_peer):
    t = make_peer("T").start()                        # open mode: any device may join
    rogue = AuthenticatedRogue((t.host, t.port), None).start_reader()
    waiting = gap_events(WAITING, origin=ids(1)[0])   # seq 1 never comes
    for i in range(0, WAITING, limits.MAX_EVENTS_PER_BATCH):
        rogue.send_events(waiting[i:i + limits.MAX_EVENTS_PER_BATCH])
    wait_until(lambda: status(t)["folder_state"]["pending"] == WAITING, 30, "T to hold the waiting events")
    rogue.close()
    wait_until(lambda: status(t)["folder_state"]["pending"] == 0, 10, "T to drop them when the member left")
    assert f"dropped {WAITING} events from {rogue.device_id[:7]}" in t.output()
