"""In-memory stand-ins shared by the pure transport tests."""

from collections import deque

from p2p.transport import Channel, ChannelClosed


class InMemoryChannel(Channel):
    """An inner channel shared by both ends: ``frames`` is what is in flight,
    in order, so a test can read, tamper with, replay, drop or reorder it."""

    def __init__(self):
        self.frames = deque()
        self.closed = False

    def send(self, frame):
        self.frames.append(frame)

    def recv(self):
        if not self.frames:
            raise ChannelClosed("nothing in flight")
        return self.frames.popleft()

    def close(self):
        self.closed = True
