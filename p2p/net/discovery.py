"""UDP discovery: announce ourselves and hear the others.

An announce is sent at start, every ``limits.DISCOVERY_INTERVAL`` seconds, and
at once (rate-limited) when an unknown peer is heard, so two peers find each
other in milliseconds rather than seconds. Every peer binds the same UDP port
with SO_REUSEADDR and SO_REUSEPORT, so many peers on one host all receive
each broadcast. Targets: in LAN mode the broadcast address of every IPv4
interface (read with SIOCGIFBRDADDR), else the one configured address (for
example 127.255.255.255 on loopback). Our own announces are ignored.
``on_tick`` runs once per announce interval (the node forgets stale peers
there, even when nobody announces).
"""

from __future__ import annotations

import fcntl
import logging
import socket
import struct
import time
from typing import Callable, List, Optional

import gevent

from p2p import limits
from p2p.net.announce import Announce, BadAnnounce

log = logging.getLogger("p2p.discovery")

SIOCGIFBRDADDR = 0x8919
SIOCGIFFLAGS = 0x8913
IFF_BROADCAST = 0x2
IFF_UP = 0x1


def lan_broadcast_addresses() -> List[str]:
    """The IPv4 broadcast address of every interface that is up and can broadcast."""
    out = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _index, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack("H", fcntl.ioctl(probe.fileno(), SIOCGIFFLAGS, req)[16:18])[0]
                if not (flags & IFF_UP and flags & IFF_BROADCAST):
                    continue
                addr = socket.inet_ntoa(fcntl.ioctl(probe.fileno(), SIOCGIFBRDADDR, req)[20:24])
            except OSError:
                continue
            if addr != "0.0.0.0" and addr not in out:
                out.append(addr)
    finally:
        probe.close()
    return out


class Discovery:
    """Announces ``announce`` and calls ``on_peer(announce, host)`` for others."""

    def __init__(self, announce: Announce, port: int, target: str, bind_host: str,
                 on_peer: Callable[[Announce, str], bool], on_tick: Optional[Callable[[], None]] = None):
        self.announce = announce
        self.port = port
        self.target = target          # an address, or None for every LAN broadcast address
        self.bind_host = bind_host
        self.on_peer = on_peer
        self.on_tick = on_tick
        self._last_reply = 0.0
        self.recv_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.recv_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.recv_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.recv_sock.bind(("", port))
        self.send_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.send_sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if bind_host not in ("", "0.0.0.0"):
            self.send_sock.bind((bind_host, 0))  # the source address tells where to dial

    def targets(self) -> List[str]:
        return [self.target] if self.target else lan_broadcast_addresses()

    def send(self) -> None:
        data = self.announce.encode()
        for addr in self.targets():
            try:
                self.send_sock.sendto(data, (addr, self.port))
            except OSError as exc:
                log.debug("announce to %s failed: %s", addr, exc)

    def announce_loop(self) -> None:
        while True:
            self.send()
            if self.on_tick is not None:
                self.on_tick()
            gevent.sleep(limits.DISCOVERY_INTERVAL)

    def listen_loop(self) -> None:
        while True:
            data, (host, _port) = self.recv_sock.recvfrom(2048)
            try:
                other = Announce.decode(data)
            except BadAnnounce as exc:
                log.debug("ignoring datagram from %s: %s", host, exc)
                continue
            if other.device_id == self.announce.device_id:
                continue
            if self.on_peer(other, host):  # a peer we did not know: answer at once
                now = time.monotonic()
                if now - self._last_reply > 1.0:
                    self._last_reply = now
                    self.send()

    def close(self) -> None:
        self.recv_sock.close()
        self.send_sock.close()
