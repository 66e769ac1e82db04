"""Typed errors for bad input from the network.

Pure: no sockets, no clock. Every class here means "the remote peer sent
something we cannot accept"; the only right reaction is to close that one
connection (never the whole node). Mistakes made by our own code (encoding a
message with an out-of-range field, say) raise ``ValueError`` instead.
"""


class WireError(Exception):
    """Base of every error caused by bad input from the network."""


class FrameTooLarge(WireError):
    """A frame's length prefix exceeds the receiver's maximum frame size."""


class TruncatedFrame(WireError):
    """The stream ended in the middle of a frame."""


class UnknownMessageType(WireError):
    """A frame carries a type code that has no message codec."""


class MalformedMessage(WireError):
    """A frame or message payload does not follow docs/PROTOCOL.md."""


class CompressionError(WireError):
    """A compressed payload is corrupt or declares an unacceptable size."""


class AuthenticationError(WireError):
    """An encrypted frame failed authentication (tampered, replayed, wrong key)."""


class HandshakeError(WireError):
    """The peer broke the handshake (raised by the security layer)."""
