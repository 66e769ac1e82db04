"""The peer registry: every peer we know, by device id, with its address,
state, channel and times; and the rule that keeps one channel per peer pair.

Greenlet-safe by construction: it is only touched from the hub, and no
method yields, so each call is atomic with respect to other greenlets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Tuple

Address = Tuple[str, int]


@dataclass
class PeerInfo:
    device_id: str
    name: str = ""
    address: Optional[Address] = None   # where it can be dialled (announce or static)
    session: object = None              # the live Session, if connected
    connected_since: Optional[float] = None
    last_seen: Optional[float] = None
    discovered_at: Optional[float] = None

    @property
    def state(self) -> str:
        return "connected" if self.session is not None else "disconnected"


def keep_new_channel(existing_initiator: str, new_initiator: str) -> bool:
    """Both peers dialled at once: keep the channel dialled by the smaller id.

    Both ends evaluate the same rule on the same two channels, so they close
    the same one.
    """
    return new_initiator < existing_initiator


@dataclass
class PeerRegistry:
    peers: Dict[str, PeerInfo] = field(default_factory=dict)

    def get(self, device_id: str) -> PeerInfo:
        info = self.peers.get(device_id)
        if info is None:
            info = self.peers[device_id] = PeerInfo(device_id)
        return info

    def connected(self) -> Iterator[PeerInfo]:
        return (p for p in list(self.peers.values()) if p.session is not None)

    def sessions(self) -> list:
        return [p.session for p in self.peers.values() if p.session is not None]

    def attach(self, device_id: str, session, now: float) -> Optional[object]:
        """Make ``session`` the peer's channel; return the session to close, if any."""
        info = self.get(device_id)
        old = info.session
        if old is not None and not keep_new_channel(old.initiator_id, session.initiator_id):
            return session
        info.session = session
        info.connected_since = now
        info.last_seen = now
        return old

    def detach(self, device_id: str, session) -> bool:
        info = self.peers.get(device_id)
        if info is not None and info.session is session:
            info.session = None
            info.connected_since = None
            return True
        return False

    def find(self, text: str) -> Optional[PeerInfo]:
        """A peer by device id, unique id prefix (dashes ignored) or name."""
        key = text.replace("-", "").upper()
        by_id = [p for p in self.peers.values() if p.device_id.startswith(key)]
        if len(by_id) == 1:
            return by_id[0]
        by_name = [p for p in self.peers.values() if p.name == text]
        return by_name[0] if len(by_name) == 1 else None
