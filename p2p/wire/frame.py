"""Frame codec: the length-prefixed envelope every message travels in.

Pure: no sockets, no clock. Bytes in, frames out (``FrameDecoder``); frames
in, bytes out (``encode_frame``). Wire format (docs/PROTOCOL.md, "Framing")::

    LENGTH (u32 big-endian) | TYPE (u8) | FLAGS (u8) | PAYLOAD (LENGTH - 2 bytes)

LENGTH counts TYPE + FLAGS + PAYLOAD, so it is at least 2.
"""

import ctypes
import struct
from typing import List, NamedTuple, Optional, Tuple, Union

from p2p import limits
from p2p.wire.errors import FrameTooLarge, MalformedMessage, TruncatedFrame

FLAG_COMPRESSED = 0x01  # payload is an lz4 block (p2p/transport/compress.py)
FLAG_ENCRYPTED = 0x02   # payload is AES-256-GCM ciphertext + tag (p2p/transport/encrypt.py)
KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_ENCRYPTED  # every other bit is reserved: must be 0

LENGTH_PREFIX = struct.Struct(">I")
HEADER = struct.Struct(">IBB")  # LENGTH, TYPE, FLAGS
HEADER_SIZE = HEADER.size       # 6
TYPE_AND_FLAGS_SIZE = 2
MAX_LENGTH = 0xFFFFFFFF         # largest value a u32 LENGTH can hold

BytesLike = Union[bytes, bytearray, memoryview]


def _bytearray_maker():
    """CPython's ``PyByteArray_FromStringAndSize`` (given no bytes to copy,
    it leaves the new buffer as the allocator handed it over), or None where
    the C API cannot be reached."""
    try:
        make = ctypes.pythonapi.PyByteArray_FromStringAndSize   # (pythonapi: the GIL is kept)
    except (AttributeError, OSError):
        return None
    make.restype = ctypes.py_object
    make.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
    return make


_MAKE_BYTEARRAY = _bytearray_maker()


def uninitialized(size: int) -> bytearray:
    """A bytearray of ``size`` bytes that holds whatever its memory held: the
    caller writes every byte before any is read (and drops it if it cannot).
    For a large buffer filled whole right after (a received frame's payload,
    a sealed frame): ``bytearray(size)`` would first zero it, one more pass
    over a MiB in the hub with the GIL held (0.02-0.19 ms of CPU per 1.25 MiB
    frame decoded, 0.12-0.19 ms per frame sealed, on the 2-core VM with 40
    frames alive). Zeroed where the C API is missing."""
    if _MAKE_BYTEARRAY is None or size <= 0:
        return bytearray(size)
    return _MAKE_BYTEARRAY(None, size)


class Frame(NamedTuple):
    """One frame. ``payload`` is any bytes-like object: ``FrameDecoder``
    yields a fresh bytearray the caller owns (no copy for large frames);
    encoders and senders accept bytes, bytearray or memoryview."""

    type: int
    flags: int
    payload: BytesLike


def encode_frame_parts(frame: Frame) -> Tuple[bytes, BytesLike]:
    """Return (6-byte header, payload) so a sender can write both without
    joining them (``socket.sendmsg``). Raises ValueError on a frame we must
    not send (type or flags out of range, reserved flag bits, payload too
    long for a u32 LENGTH)."""
    if not 0 <= frame.type <= 0xFF:
        raise ValueError(f"frame type {frame.type!r} is not a u8")
    if not 0 <= frame.flags <= 0xFF or frame.flags & ~KNOWN_FLAGS:
        raise ValueError(f"frame flags {frame.flags:#x} use reserved bits")
    length = TYPE_AND_FLAGS_SIZE + len(frame.payload)
    if length > MAX_LENGTH:
        raise ValueError(f"frame payload of {len(frame.payload)} bytes does not fit a u32 length")
    return HEADER.pack(length, frame.type, frame.flags), frame.payload


def encode_frame(frame: Frame) -> bytes:
    """Return the frame's wire bytes: header followed by payload."""
    header, payload = encode_frame_parts(frame)
    return header + payload


class FrameDecoder:
    """Incremental frame parser. Either ``feed`` it bytes as they arrive, or
    let a reader write straight into it, like ``asyncio.BufferedProtocol``::

        with decoder.get_buffer() as view:
            count = sock.recv_into(view)
        frames = decoder.buffer_updated(count)

    Small frames are parsed out of one reused buffer of ``chunk`` bytes; a
    larger frame gets a bytearray of exactly its payload size, which the
    reader fills directly and which becomes the frame's payload (no copy;
    not zeroed first, ``uninitialized``: the frame is returned only once
    every byte of it was received).
    Decoded payloads are therefore fresh ``bytearray`` objects owned by the
    caller. Linear time in the bytes received, whatever the chunking. A
    length above ``max_frame`` raises ``FrameTooLarge`` as soon as its four
    bytes are seen, before anything is allocated for it. After any
    ``WireError`` the decoder (and its connection) must be discarded.
    """

    def __init__(self, max_frame: int = limits.MAX_FRAME, chunk: int = limits.RECV_CHUNK):
        if chunk < 2 * HEADER_SIZE:
            raise ValueError(f"chunk of {chunk} bytes cannot hold a frame header and more")
        self.max_frame = max_frame  # may be raised later, e.g. once a handshake is done
        self._chunk = chunk
        self._own_payload_from = chunk // 4  # frames this large skip the shared buffer
        self._buffer = bytearray(chunk)  # received bytes live in _buffer[_start:_end]
        self._start = self._end = 0
        self._large: Optional[Frame] = None  # the large frame being filled, if any
        self._filled = 0                     # bytes of its payload received so far

    def get_buffer(self) -> memoryview:
        """Return a writable view where the next received bytes belong: the
        rest of a large frame's payload (one ``recv_into`` takes all the
        socket holds of it), else at most ``chunk`` bytes; release it before
        calling ``buffer_updated``."""
        if self._large is not None:
            return memoryview(self._large.payload)[self._filled:]
        if self._end == len(self._buffer):
            self._compact()
        return memoryview(self._buffer)[self._end:]

    def buffer_updated(self, count: int) -> List[Frame]:
        """``count`` bytes were written into the last ``get_buffer`` view;
        return every frame they complete, in order."""
        if self._large is not None:
            self._filled += count
            if self._filled < len(self._large.payload):
                return []
            frame, self._large = self._large, None
            return [frame]
        self._end += count
        return self._parse()

    def feed(self, data: BytesLike) -> List[Frame]:
        """Copy received bytes in; return every frame they complete, in order."""
        frames = []
        with memoryview(data) as source:
            offset, size = 0, len(source)
            while offset < size:
                with self.get_buffer() as target:
                    count = min(len(target), size - offset)
                    target[:count] = source[offset:offset + count]
                frames += self.buffer_updated(count)
                offset += count
        return frames

    def eof(self) -> None:
        """The stream ended: raise ``TruncatedFrame`` if a frame is incomplete."""
        if self._large is not None or self._end > self._start:
            raise TruncatedFrame("stream ended in the middle of a frame")

    def _parse(self) -> List[Frame]:
        """Take every complete frame off the front of the buffer; move a
        large incomplete frame into its own payload buffer."""
        frames = []
        with memoryview(self._buffer) as view:
            while self._end - self._start >= LENGTH_PREFIX.size:
                (length,) = LENGTH_PREFIX.unpack_from(view, self._start)
                if length > self.max_frame:
                    raise FrameTooLarge(f"frame length {length} exceeds the maximum {self.max_frame}")
                if length < TYPE_AND_FLAGS_SIZE:
                    raise MalformedMessage(f"frame length {length} is below the minimum of 2")
                if self._end - self._start < HEADER_SIZE:
                    break
                _, frame_type, flags = HEADER.unpack_from(view, self._start)
                if flags & ~KNOWN_FLAGS:
                    raise MalformedMessage(f"frame flags {flags:#x} use reserved bits")
                payload_start = self._start + HEADER_SIZE
                frame_end = self._start + LENGTH_PREFIX.size + length
                if frame_end <= self._end:
                    frames.append(Frame(frame_type, flags, bytearray(view[payload_start:frame_end])))
                    self._start = frame_end
                elif LENGTH_PREFIX.size + length >= self._own_payload_from:
                    payload = uninitialized(length - TYPE_AND_FLAGS_SIZE)   # returned only once filled
                    self._filled = self._end - payload_start
                    payload[:self._filled] = view[payload_start:self._end]
                    self._large = Frame(frame_type, flags, payload)
                    self._start = self._end
                    break
                else:
                    break
        if self._start == self._end:
            self._start = self._end = 0
        return frames

    def _compact(self) -> None:
        """Move the unparsed bytes (less than a small frame) to the front."""
        pending = self._end - self._start
        self._buffer[:pending] = self._buffer[self._start:self._end]
        self._start, self._end = 0, pending
