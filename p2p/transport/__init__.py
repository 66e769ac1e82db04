"""p2p/transport: channels that carry frames, and their stackable layers.

The I/O edge. ``TcpChannel`` owns the socket; ``EncryptedChannel`` and
``CompressingChannel`` wrap any channel. A session uses ``secure_stack``:
compress, then encrypt, then frame onto TCP. No gevent import here.
"""

import socket
from typing import Optional, Union

from p2p import limits
from p2p.transport.channel import Channel, ChannelClosed, Offload
from p2p.transport.compress import CompressingChannel
from p2p.transport.encrypt import EncryptedChannel
from p2p.transport.tcp import TcpChannel


def secure_stack(connection: Union[socket.socket, TcpChannel], send_key: bytes, recv_key: bytes,
                 max_frame: int = limits.MAX_FRAME,
                 offload: Optional[Offload] = None) -> Channel:
    """Return ``CompressingChannel(EncryptedChannel(TcpChannel(sock)))``.

    Pass the TcpChannel that carried the handshake, not its socket, so frames
    the peer sent right behind its last handshake frame are not lost.
    """
    tcp = connection if isinstance(connection, TcpChannel) else TcpChannel(connection, max_frame)
    tcp.max_frame = max_frame
    return CompressingChannel(EncryptedChannel(tcp, send_key, recv_key, offload), max_frame, offload)


__all__ = ["Channel", "ChannelClosed", "Offload", "TcpChannel", "CompressingChannel",
           "EncryptedChannel", "secure_stack"]
