"""The Channel abstraction: a bidirectional stream of frames.

Channels stack: ``CompressingChannel(EncryptedChannel(TcpChannel(sock)))``.
Each layer transforms a frame on ``send`` and undoes it on ``recv``. No gevent
import here: sockets are gevent-patched by the entry point, and CPU-heavy
work can be handed to a thread pool through an ``offload`` callable.
"""

import functools
from abc import ABC, abstractmethod
from typing import Any, Callable, Optional, TypeVar

from p2p import limits
from p2p.wire.frame import Frame

T = TypeVar("T")

# Runs a zero-argument function elsewhere (say gevent's native thread pool:
# ``lambda fn: hub.threadpool.apply(fn)``) and returns its result.
Offload = Callable[[Callable[[], T]], T]

OFFLOAD_MIN = 256 * limits.KiB  # smaller work finishes faster than a hand-off to a thread


class ChannelClosed(Exception):
    """The stream ended cleanly between frames, or the channel was closed."""


class Channel(ABC):
    """A stream of frames. One sender at a time and one receiver at a time
    (the caller guarantees it); a send and a recv may run concurrently."""

    @abstractmethod
    def send(self, frame: Frame) -> None:
        """Send one whole frame. Raises ChannelClosed once the channel is
        closed, OSError if the connection breaks."""

    @abstractmethod
    def recv(self) -> Frame:
        """Return the next frame. Raises ChannelClosed on a clean end of
        stream or once the channel is closed, a WireError on bad input,
        OSError if the connection breaks."""

    @abstractmethod
    def close(self) -> None:
        """Close the channel and the layers beneath it; idempotent, and wakes
        a recv blocked in another thread or greenlet."""


def run_cpu(offload: Optional[Offload], size: int, fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(*args)``, through ``offload`` when it handles ``size`` bytes
    or more, so large buffers never stall the caller's event loop."""
    if offload is None or size < OFFLOAD_MIN:
        return fn(*args)
    return offload(functools.partial(fn, *args))
