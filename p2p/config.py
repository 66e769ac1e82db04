"""The settings of a running peer, from command-line flags and environment.

Pure: parses strings into a frozen ``Config``; reads no files and opens no
sockets (the secret file is read by ``p2p.security.membership``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from p2p import limits

Address = Tuple[str, int]

LAN = "lan"  # discovery by broadcast on every interface (the product default)


@dataclass(frozen=True)
class Config:
    home: Path
    root: Path
    listen: Address
    discovery: Optional[object]  # LAN, an (addr, port) tuple, or None for off
    peers: Tuple[Address, ...] = ()
    secret_file: Optional[str] = None
    secret_env: Optional[str] = None
    name: str = field(default_factory=socket.gethostname)
    keep_bytes: Optional[int] = None
    keep_days: Optional[float] = None
    rescan_interval: float = limits.RESCAN_INTERVAL  # seconds between full rescans; 0: never
    gui: Optional[Address] = None    # the dashboard's loopback address (p2p/gui), or None: off
    gui_required: bool = False       # asked for (--gui, P2P_GUI): failing to serve it stops the start

    @property
    def discovery_port(self) -> int:
        if isinstance(self.discovery, tuple):
            return self.discovery[1]
        return limits.DEFAULT_UDP_PORT


def parse_address(text: str, default_host: str = "0.0.0.0", default_port: int = limits.DEFAULT_TCP_PORT) -> Address:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``PORT`` into a (host, port) pair;
    ValueError, with a sentence a person can act on, for anything else."""
    text = text.strip()
    if not text:
        raise ValueError("an empty address (expected HOST:PORT)")
    if text.isdigit():
        host, port_text = default_host, text
    elif text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} is not HOST:PORT ([IPv6]:PORT for an IPv6 address)")
        port_text = rest[1:] if rest else str(default_port)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        host = host or default_host
    elif ":" in text:
        raise ValueError(f"{text!r} is not HOST:PORT (write an IPv6 address as [ADDR]:PORT)")
    else:
        host, port_text = text, str(default_port)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def parse_discovery(text: Optional[str]):
    """``lan`` (default), ``off``, or ``ADDR[:PORT]`` with ADDR an IPv4 address
    (e.g. 127.255.255.255:9999); a host name is refused: a typo such as
    ``--discovery bogus`` must not silently become a broadcast target."""
    if text is None or text.strip().lower() in ("", LAN):
        return LAN
    if text.strip().lower() == "off":
        return None
    usage = "expected 'lan', 'off' or ADDR:PORT with an IPv4 address, such as 127.255.255.255:9999"
    try:
        host, port = parse_address(text, default_host="127.255.255.255", default_port=limits.DEFAULT_UDP_PORT)
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"{text.strip()!r}: {usage}") from None
    if port == 0:
        raise ValueError(f"{text.strip()!r}: port 0 cannot be a discovery port ({usage})")
    return host, port


def parse_gui(text: Optional[str]) -> Optional[Address]:
    """``off``, or a loopback ``HOST:PORT`` (``PORT`` alone: 127.0.0.1; port 0:
    any free one) for the dashboard. Any other host is refused: the dashboard
    can restore and pause the folder, so it is never served beyond this machine."""
    if text is None:
        return "127.0.0.1", limits.DEFAULT_GUI_PORT
    if text.strip().lower() == "off":
        return None
    host, port = parse_address(text, default_host="127.0.0.1", default_port=limits.DEFAULT_GUI_PORT)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"--gui {text}: the dashboard is served on a loopback address only "
                         f"(127.0.0.1, ::1 or localhost), or 'off'")
    return host, port


def parse_peers(items) -> Tuple[Address, ...]:
    """Static peers from repeated flags and/or a comma/space separated list."""
    out = []
    for item in items or ():
        for part in item.replace(",", " ").split():
            out.append(parse_address(part, default_host="127.0.0.1"))
    return tuple(out)


def env(name: str, default=None):
    value = os.environ.get(name)
    return value if value not in (None, "") else default
