"""CompressingChannel: lz4 block compression of frame payloads.

A payload is sent compressed (FLAG_COMPRESSED) only when that makes it
smaller, so incompressible data costs nothing but the check. Compressed
payload = uncompressed length (u32 big-endian) + one lz4 block. The declared
length is checked against ``max_frame`` before anything is allocated.
``compress_payload``/``decompress_payload`` are pure (no sockets, no clock).
"""

import struct
from typing import Optional

import lz4.block

from p2p import limits
from p2p.transport.channel import Channel, Offload, run_cpu
from p2p.wire.errors import CompressionError
from p2p.wire.frame import FLAG_COMPRESSED, BytesLike, Frame

SIZE_PREFIX = struct.Struct(">I")
COMPRESS_MIN = 64               # smaller payloads cannot win back the 4-byte size prefix
SAMPLE_FROM = 256 * limits.KiB  # payloads this large are sampled before a full lz4 pass
SAMPLE_SIZE = 64 * limits.KiB   # the sample: the payload's first 64 KiB
SAMPLE_MAX_RATIO = 0.9          # a sample that shrinks by less than 10%: send uncompressed


def compress_payload(payload: BytesLike) -> Optional[bytearray]:
    """Return the compressed payload, or None when compressing would not
    make it smaller (too small, incompressible sample, or no gain)."""
    return compress_whole(payload) if worth_trying(payload) else None


def worth_trying(payload: BytesLike) -> bool:
    """False for a payload too small to win, or a large one whose first
    SAMPLE_SIZE bytes barely compress (one quick lz4 pass over the sample:
    cheap enough to run in the caller, so an incompressible block costs no
    hand-off to a thread)."""
    size = len(payload)
    if size < COMPRESS_MIN:
        return False
    if size >= SAMPLE_FROM:
        sample = lz4.block.compress(memoryview(payload)[:SAMPLE_SIZE], store_size=False)
        return len(sample) <= SAMPLE_SIZE * SAMPLE_MAX_RATIO
    return True


def compress_whole(payload: BytesLike) -> Optional[bytearray]:
    """The compressed payload, or None if it is not smaller."""
    # store_size=True reserves the 4-byte prefix (little-endian); rewrite it
    # big-endian in place rather than joining a new prefix to the block.
    compressed = lz4.block.compress(payload, store_size=True, return_bytearray=True)
    if len(compressed) >= len(payload):
        return None
    SIZE_PREFIX.pack_into(compressed, 0, len(payload))
    return compressed


def uncompressed_size(payload: BytesLike, max_size: int) -> int:
    """Return the size a compressed payload declares; CompressionError if it
    has no prefix or declares more than ``max_size``."""
    if len(payload) < SIZE_PREFIX.size:
        raise CompressionError(f"compressed payload of {len(payload)} bytes has no size prefix")
    (size,) = SIZE_PREFIX.unpack_from(payload)
    if size > max_size:
        raise CompressionError(f"declared uncompressed size {size} exceeds the maximum {max_size}")
    return size


def decompress_payload(payload: BytesLike, max_size: int) -> bytes:
    """Undo ``compress_payload``; CompressionError if the declared size is
    above ``max_size`` or the block is corrupt."""
    size = uncompressed_size(payload, max_size)
    try:
        data = lz4.block.decompress(memoryview(payload)[SIZE_PREFIX.size:], uncompressed_size=size)
    except lz4.block.LZ4BlockError as exc:
        raise CompressionError(f"corrupt lz4 block: {exc}") from None
    if len(data) != size:
        raise CompressionError(f"lz4 block holds {len(data)} bytes, declared {size}")
    return data


class CompressingChannel(Channel):
    def __init__(self, inner: Channel, max_frame: int = limits.MAX_FRAME,
                 offload: Optional[Offload] = None):
        self.max_frame = max_frame
        self._inner = inner
        self._offload = offload

    def send(self, frame: Frame) -> None:
        compressed = None
        if worth_trying(frame.payload):
            compressed = run_cpu(self._offload, len(frame.payload), compress_whole, frame.payload)
        if compressed is not None:
            frame = Frame(frame.type, frame.flags | FLAG_COMPRESSED, compressed)
        self._inner.send(frame)

    def recv(self) -> Frame:
        frame = self._inner.recv()
        if not frame.flags & FLAG_COMPRESSED:
            return frame
        size = uncompressed_size(frame.payload, self.max_frame)
        payload = run_cpu(self._offload, size, decompress_payload, frame.payload, self.max_frame)
        return Frame(frame.type, frame.flags & ~FLAG_COMPRESSED, payload)

    def close(self) -> None:
        self._inner.close()
