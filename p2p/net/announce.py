"""The discovery announce datagram (pure: bytes in, typed values out).

Layout: magic ``b"P2PD"``, one version byte (1), then a UTF-8 JSON object
``{"id": DEVICE_ID, "port": TCP_PORT, "name": NAME}``. The sender's address
is the datagram's source address. An announce proves nothing: it only tells
where to dial; the handshake authenticates.
"""

from __future__ import annotations

from dataclasses import dataclass

import ujson

from p2p.history.event import is_device_id
from p2p.wire.text import display_name

MAGIC = b"P2PD"
VERSION = 1
MAX_ANNOUNCE = 512


class BadAnnounce(ValueError):
    pass


@dataclass(frozen=True)
class Announce:
    device_id: str
    port: int
    name: str

    def encode(self) -> bytes:
        body = ujson.dumps({"id": self.device_id, "port": self.port, "name": self.name[:64]},
                           ensure_ascii=False).encode()
        return MAGIC + bytes([VERSION]) + body

    @classmethod
    def decode(cls, data: bytes) -> "Announce":
        if len(data) > MAX_ANNOUNCE or not data.startswith(MAGIC) or len(data) < 6:
            raise BadAnnounce("not a p2p announce")
        if data[4] != VERSION:
            raise BadAnnounce(f"unsupported announce version {data[4]}")
        try:
            obj = ujson.loads(data[5:].decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadAnnounce(f"bad announce body: {exc}") from None
        if not isinstance(obj, dict):
            raise BadAnnounce("announce body is not an object")
        device, port, name = obj.get("id"), obj.get("port"), obj.get("name", "")
        if not is_device_id(device):   # canonical only: the form device ids are compared in
            raise BadAnnounce("bad device id")
        if type(port) is not int or not 0 < port < 65536:
            raise BadAnnounce("bad port")
        if not isinstance(name, str):
            raise BadAnnounce("bad name")
        return cls(device, port, display_name(name))   # control characters never reach a terminal
