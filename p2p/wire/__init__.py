"""p2p/wire: frames and typed messages, sans-I/O (bytes in, messages out).

Pure: no sockets, no clock. ``frame`` is the length-prefixed envelope,
``messages`` the typed payloads, ``errors`` the typed errors for bad input.
The format is specified byte for byte in docs/PROTOCOL.md.
"""

from p2p.wire.errors import (AuthenticationError, CompressionError, FrameTooLarge,
                             HandshakeError, MalformedMessage, TruncatedFrame,
                             UnknownMessageType, WireError)
from p2p.wire.frame import (FLAG_COMPRESSED, FLAG_ENCRYPTED, Frame, FrameDecoder,
                            encode_frame, encode_frame_parts)
from p2p.wire.messages import (BlockData, BlockRequest, BlockRequests, BlocksData, BlockStatus, Bye, Error, Events,
                               HandshakeAuth, HandshakeHello, Have, Hello, ListReply, ListRequest,
                               Message, MsgType, Neighbors, Ping, Pong, Summary, decode_message,
                               encode_message)

__all__ = [
    "WireError", "FrameTooLarge", "TruncatedFrame", "UnknownMessageType", "MalformedMessage",
    "CompressionError", "AuthenticationError", "HandshakeError",
    "Frame", "FrameDecoder", "FLAG_COMPRESSED", "FLAG_ENCRYPTED", "encode_frame",
    "encode_frame_parts",
    "MsgType", "BlockStatus", "Message", "Hello", "Summary", "Events", "BlockRequest",
    "BlockData", "BlockRequests", "BlocksData", "Ping", "Pong", "Error", "Bye", "ListRequest", "ListReply",
    "Neighbors", "Have", "HandshakeHello", "HandshakeAuth", "encode_message", "decode_message",
]
