"""TcpChannel: frames over a connected stream socket.

The I/O edge. Reads with ``recv_into`` straight into the ``FrameDecoder``'s
buffer (at most ``limits.RECV_CHUNK`` per call; a large frame's payload is
read into its own buffer, which becomes the payload, as much of it per call
as the socket holds). Writes header and
payload with one ``sendmsg`` (scatter-gather: no join, no copy).
"""

import socket
from collections import deque

from p2p import limits
from p2p.transport.channel import Channel, ChannelClosed
from p2p.wire.frame import TYPE_AND_FLAGS_SIZE, Frame, FrameDecoder, encode_frame_parts


class TcpChannel(Channel):
    def __init__(self, sock: socket.socket, max_frame: int = limits.MAX_FRAME):
        self._sock = sock
        self._decoder = FrameDecoder(max_frame)
        self._ready = deque()  # decoded frames not yet returned by recv
        self._closed = False
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Whole frames are written at once; never hold a small one back.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def max_frame(self) -> int:
        """Largest frame accepted, both ways. A handshake can start small and
        raise it once the peer is authenticated."""
        return self._decoder.max_frame

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        self._decoder.max_frame = value

    def send(self, frame: Frame) -> None:
        if self._closed:
            raise ChannelClosed("channel is closed")
        header, payload = encode_frame_parts(frame)
        if TYPE_AND_FLAGS_SIZE + len(payload) > self.max_frame:
            raise ValueError(f"frame of {len(payload)} payload bytes exceeds the maximum {self.max_frame}")
        sent = self._sock.sendmsg([header, payload])
        if sent < len(header):
            self._sock.sendall(header[sent:])
            sent = len(header)
        if sent - len(header) < len(payload):
            self._sock.sendall(memoryview(payload)[sent - len(header):])

    def recv(self) -> Frame:
        while not self._ready:
            if self._closed:
                raise ChannelClosed("channel is closed")
            try:
                with self._decoder.get_buffer() as view:
                    count = self._sock.recv_into(view)
            except OSError:
                if self._closed:
                    raise ChannelClosed("channel is closed") from None
                raise
            if self._closed:
                raise ChannelClosed("channel is closed")
            if not count:
                self._decoder.eof()
                raise ChannelClosed("peer closed the connection")
            self._ready.extend(self._decoder.buffer_updated(count))
        return self._ready.popleft()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked elsewhere
        except OSError:
            pass  # already disconnected
        self._sock.close()
