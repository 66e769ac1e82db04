"""The peer registry: every peer we know, by device id, with its address,
state, channel and times; the rule that keeps one channel per peer pair
(``resolve``); the bounds on peers only heard of by discovery; the dial
budget per announcing host (``DialBudget``).

Pure: no sockets, no gevent, no clock reads (time is passed in). Only the
hub touches it and no method yields, so each call is atomic with respect to
other greenlets.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from p2p import limits
from p2p.security.identity import device_id_prefix

Address = Tuple[str, int]

KEEP_NEW = "keep new"    # the new channel replaces the old one, which is closed now
KEEP_OLD = "keep old"    # the new channel is closed now
KEEP_BOTH = "keep both"  # both are ours: use the new one, close neither; the responder closes the loser


def resolve(me: str, old_initiator: str, new_initiator: str) -> str:
    """Which of two channels with the same peer survives (docs/PROTOCOL.md,
    "One channel per pair"). Device ids are compared in their canonical
    32-character form, as byte (ASCII) strings.

    * Different initiators: the channel dialled by the smaller device id.
      Both ends see both initiators, so both close the same channel.
    * Same initiator: the newer one, in the order the *responder* completed
      the two handshakes. The responder knows that order and closes the
      older channel at once: that is how a peer whose old link died without
      a FIN gets in at once. The initiator cannot know it (its own order may
      differ), so it closes neither and leaves the choice to the responder.
    """
    if old_initiator != new_initiator:
        return KEEP_NEW if new_initiator < old_initiator else KEEP_OLD
    return KEEP_BOTH if new_initiator == me else KEEP_NEW


@dataclass
class Failure:
    """The last failed attempt to connect (a dial or a handshake), for `p2p status`."""
    reason: str
    time: float
    count: int = 1


@dataclass
class PeerInfo:
    device_id: str
    name: str = ""
    address: Optional[Address] = None   # where it can be dialled (announce or static)
    session: object = None              # the live Session, if connected
    connected_since: Optional[float] = None
    last_seen: Optional[float] = None
    discovered_at: Optional[float] = None
    standby: List[object] = field(default_factory=list)  # our own older channels (KEEP_BOTH), newest last
    last_error: Optional[Failure] = None
    # what the peer last said it has (its Have message; kept after it leaves):
    # its version vector, and the files and bytes of those versions it still lacks
    has_vv: Optional[Dict[str, int]] = None
    needs: Tuple[int, int] = (0, 0)
    has_from: object = None             # weak reference to the session whose Have messages has_vv adds up

    @property
    def state(self) -> str:
        return "connected" if self.session is not None else "disconnected"


class DialBudget:
    """At most ``limits.DIALS_PER_HOST`` dial attempts to the peers announced
    by one host in each ``limits.DIAL_WINDOW`` seconds."""

    def __init__(self):
        self._windows: Dict[str, Tuple[float, int]] = {}   # host -> (window start, attempts in it)

    def allow(self, host: str, now: float) -> bool:
        start, count = self._windows.get(host, (now, 0))
        if now - start >= limits.DIAL_WINDOW:
            start, count = now, 0
        allowed = count < limits.DIALS_PER_HOST
        self._windows[host] = (start, count + allowed)
        if len(self._windows) > limits.MAX_DISCOVERED:   # forget the hosts whose window has passed
            self._windows = {h: w for h, w in self._windows.items() if now - w[0] < limits.DIAL_WINDOW}
        return allowed


@dataclass
class PeerRegistry:
    peers: Dict[str, PeerInfo] = field(default_factory=dict)
    dials: DialBudget = field(default_factory=DialBudget)
    # peers heard of by discovery and never connected: device id -> announcing
    # host, least recently announced first (expiry and the caps read this)
    _strangers: "OrderedDict[str, str]" = field(default_factory=OrderedDict)
    _strangers_per_host: Dict[str, int] = field(default_factory=dict)
    # the peer each address we dialled last led to, most recent last (at most MAX_DISCOVERED)
    _reached: "OrderedDict[Address, str]" = field(default_factory=OrderedDict)
    # failed connections that no known peer explains: "host:port" dialled, or
    # "host" that dialled us; most recent last (at most MAX_DISCOVERED)
    failures: "OrderedDict[str, Failure]" = field(default_factory=OrderedDict)

    def get(self, device_id: str) -> PeerInfo:
        info = self.peers.get(device_id)
        if info is None:
            info = self.peers[device_id] = PeerInfo(device_id)
        return info

    def connected(self) -> Iterator[PeerInfo]:
        return (p for p in list(self.peers.values()) if p.session is not None)

    def sessions(self) -> list:
        """Every live session: each peer's channel, then its standby ones."""
        return [s for p in self.peers.values() if p.session is not None for s in (p.session, *p.standby)]

    # -- channels ----------------------------------------------------------------
    def attach(self, device_id: str, session, now: float, me: str) -> List[object]:
        """Make ``session`` the peer's channel if ``resolve`` keeps it; return
        the sessions to close now (``session`` itself if it lost)."""
        info = self.get(device_id)
        old = info.session
        verdict = KEEP_NEW if old is None else resolve(me, old.initiator_id, session.initiator_id)
        if verdict == KEEP_OLD:
            return [session]
        if verdict == KEEP_BOTH:
            info.standby.append(old)
            closing = []
        else:
            closing = [s for s in (old, *info.standby) if s is not None]
            info.standby = []
        self._forget_stranger(device_id)
        info.session = session
        info.connected_since = now
        info.last_seen = now
        return closing

    def detach(self, device_id: str, session) -> bool:
        """A session ended; True if the peer has no channel left. A standby
        channel takes over when the peer's channel ends."""
        info = self.peers.get(device_id)
        if info is None:
            return False
        if session in info.standby:
            info.standby.remove(session)
            return False
        if info.session is not session:
            return False
        if info.standby:
            info.session = info.standby.pop()
            return False
        info.session = None
        info.connected_since = None
        return True

    # -- failures ----------------------------------------------------------------
    def failed(self, reason: str, now: float, *, dialled: Optional[Address] = None, host: str = "") -> None:
        """A connection failed (``dialled``: our dial to that address; else an
        inbound one from ``host``): kept on the peer that address leads to, if
        known, else in ``failures``."""
        peer = None
        if dialled is not None:
            peer = self.peers.get(self._reached.get(dialled, "")) or next(
                (p for p in self.peers.values() if p.address == dialled), None)
        key = f"{dialled[0]}:{dialled[1]}" if dialled is not None else host
        if peer is not None:
            peer.last_error = _again(peer.last_error, reason, now)
            self.failures.pop(key, None)
            return
        self.failures[key] = _again(self.failures.get(key), reason, now)
        self.failures.move_to_end(key)
        if len(self.failures) > limits.MAX_DISCOVERED:
            self.failures.popitem(last=False)

    # -- dialling ----------------------------------------------------------------
    def reached(self, address: Address, device_id: str) -> None:
        """Our dial to ``address`` reached ``device_id`` (handshake done); an
        earlier failure there is now the peer's last error."""
        failure = self.failures.pop(f"{address[0]}:{address[1]}", None)
        if failure is not None:
            self.get(device_id).last_error = failure
        self._reached[address] = device_id
        self._reached.move_to_end(address)
        if len(self._reached) > limits.MAX_DISCOVERED:
            self._reached.popitem(last=False)

    def may_dial(self, address: Address, static: bool, now: float) -> bool:
        """Whether a dialer may try ``address`` now: not while the peer it last
        led to is connected (by another address or by its own dial: a second
        channel from us would only replace the first), and, for an address
        heard from discovery, within its host's ``DialBudget``."""
        peer = self.peers.get(self._reached.get(address, ""))
        if peer is not None and peer.session is not None:
            return False
        return static or self.dials.allow(address[0], now)

    # -- discovery -------------------------------------------------------------
    def heard(self, device_id: str, name: str, address: Address, now: float) -> Tuple[Optional[PeerInfo], bool]:
        """An announce from ``address``: (the peer's entry, whether it is newly
        announced). (None, False) when the table of peers heard of but never
        connected is full (``limits.MAX_DISCOVERED``, or
        ``limits.MAX_DISCOVERED_PER_HOST`` for the announcing host): the
        announce is ignored."""
        self.expire(now)
        info = self.peers.get(device_id)
        host = address[0]
        if info is None:
            if (len(self._strangers) >= limits.MAX_DISCOVERED
                    or self._strangers_per_host.get(host, 0) >= limits.MAX_DISCOVERED_PER_HOST):
                return None, False
            info = self.peers[device_id] = PeerInfo(device_id, address=address)
            self._strangers[device_id] = host
            self._strangers_per_host[host] = self._strangers_per_host.get(host, 0) + 1
        elif device_id in self._strangers:
            self._strangers.move_to_end(device_id)
        new = info.discovered_at is None
        info.discovered_at = now
        info.name = info.name or name
        info.address = info.address or address
        return info, new

    def expire(self, now: float) -> int:
        """Forget the peers heard of but never connected whose last announce is
        ``limits.PEER_EXPIRY`` old; returns how many. Reads only the stale
        entries and one more: cheap enough to run on every announce."""
        count = 0
        while self._strangers:
            device_id = next(iter(self._strangers))
            if now - self.peers[device_id].discovered_at < limits.PEER_EXPIRY:
                break
            self._forget_stranger(device_id)
            del self.peers[device_id]
            count += 1
        return count

    def strangers(self) -> int:
        """Peers heard of by discovery and never connected."""
        return len(self._strangers)

    def _forget_stranger(self, device_id: str) -> None:
        host = self._strangers.pop(device_id, None)
        if host is not None:
            self._strangers_per_host[host] -= 1
            if not self._strangers_per_host[host]:
                del self._strangers_per_host[host]

    def find(self, text: str) -> Optional[PeerInfo]:
        """A peer by device id, unique id prefix (dashes ignored) or name."""
        key = device_id_prefix(text)
        by_id = [p for p in self.peers.values() if p.device_id.startswith(key)]
        if len(by_id) == 1:
            return by_id[0]
        by_name = [p for p in self.peers.values() if p.name == text]
        return by_name[0] if len(by_name) == 1 else None


def _again(previous: Optional[Failure], reason: str, now: float) -> Failure:
    if previous is not None and previous.reason == reason:
        return Failure(reason, now, previous.count + 1)
    return Failure(reason, now)
