"""Typed messages and their payload codecs.

Pure: no sockets, no clock. ``encode_message(msg) -> Frame`` and
``decode_message(frame) -> msg``. Each message is a small frozen dataclass;
``CODECS`` maps every type code to its codec, so a new message is one class
and one table row. Payload layouts are specified in docs/PROTOCOL.md.

Decoding is strict: exact keys, exact types (no bools for ints), integers in
range, strings free of lone surrogates, binary payloads of exact length.
Anything else raises ``MalformedMessage``; an unknown type code raises
``UnknownMessageType``. Encoding runs the same field checks and raises
``ValueError`` for a message we must not send.
"""

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

import ujson

from p2p import limits
from p2p.wire.errors import MalformedMessage, UnknownMessageType
from p2p.wire.frame import Frame

HASH_SIZE = 32        # SHA-256 digest of a block
KEY_SIZE = 32         # X25519 / Ed25519 public key
SIGNATURE_SIZE = 64   # Ed25519 signature
RANDOM_SIZE = 32      # handshake random
HANDSHAKE_MAGIC = b"P2P"


class MsgType(IntEnum):
    HELLO = 0x01
    SUMMARY = 0x02
    EVENTS = 0x03
    BLOCK_REQUEST = 0x04
    BLOCK_DATA = 0x05
    PING = 0x06
    PONG = 0x07
    ERROR = 0x08
    BYE = 0x09
    LIST_REQUEST = 0x0A
    LIST_REPLY = 0x0B
    NEIGHBORS = 0x0C
    HAVE = 0x0D
    BLOCK_REQUESTS = 0x0E
    BLOCKS_DATA = 0x0F
    HANDSHAKE_HELLO = 0x20
    HANDSHAKE_AUTH = 0x21


class BlockStatus(IntEnum):
    OK = 0
    NOT_FOUND = 1


# --- messages ---------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    """First message of a session: the peer's display name, listening port and
    protocol version."""
    name: str
    port: int
    version: int


@dataclass(frozen=True)
class Summary:
    """The sender's version vector: origin id -> highest contiguous seq."""
    vv: Dict[str, int]


@dataclass(frozen=True)
class Events:
    """A batch of raw event dicts (validated by p2p/history, not here)."""
    events: Tuple[dict, ...]


@dataclass(frozen=True)
class BlockRequest:
    """Ask for the block with this hash and size; ``req_id`` pairs the reply."""
    req_id: int
    size: int
    hash: bytes


@dataclass(frozen=True)
class BlockData:
    """Reply to a BlockRequest; ``data`` is empty unless status is OK."""
    req_id: int
    status: int
    hash: bytes
    data: bytes


@dataclass(frozen=True)
class BlockRequests:
    """Several small BlockRequests in one frame (each at most SMALL_BLOCK bytes)."""
    requests: Tuple[BlockRequest, ...]


@dataclass(frozen=True)
class BlocksData:
    """Several BlockData replies in one frame, answering one BlockRequests."""
    blocks: Tuple[BlockData, ...]


@dataclass(frozen=True)
class Ping:
    nonce: int


@dataclass(frozen=True)
class Pong:
    nonce: int


@dataclass(frozen=True)
class Error:
    """Why the sender is about to close the connection (or refused a request)."""
    code: str
    message: str


@dataclass(frozen=True)
class Bye:
    """Clean goodbye before closing."""
    reason: str


@dataclass(frozen=True)
class ListRequest:
    req_id: int
    path: str


@dataclass(frozen=True)
class ListReply:
    req_id: int
    entries: Tuple[dict, ...]


@dataclass(frozen=True)
class Neighbors:
    """The device ids the sender has a channel with now (sent on every change),
    so a peer does not forward an event to someone who gets it from its origin."""
    ids: Tuple[str, ...]


@dataclass(frozen=True)
class Have:
    """What the sender has, so a peer can say what it lacks: the origins of its
    version vector that moved since its Summary or last Have on this channel,
    and how many files (and bytes) of the versions it knows are not on its disk
    yet. Sent only when something changed, at most once a second per channel."""
    vv: Dict[str, int]
    files: int
    bytes: int


@dataclass(frozen=True)
class HandshakeHello:
    version: int
    ephemeral: bytes
    random: bytes


@dataclass(frozen=True)
class HandshakeAuth:
    identity: bytes
    signature: bytes


Message = Union[Hello, Summary, Events, BlockRequest, BlockData, BlockRequests, BlocksData, Ping, Pong, Error, Bye,
                ListRequest, ListReply, Neighbors, Have, HandshakeHello, HandshakeAuth]


# --- field checks: value -> normalised value, or ValueError -------------------

FieldCheck = Callable[[Any], Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def unsigned(bits: int) -> FieldCheck:
    top = (1 << bits) - 1

    def check(value):
        if not _is_int(value) or not 0 <= value <= top:
            raise ValueError(f"expected a u{bits}, got {value!r:.80}")
        return int(value)
    return check


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if not value.isascii():
        value.encode("utf-8")  # UnicodeEncodeError (a ValueError) on lone surrogates
    return str(value)


def one_of(enum: type) -> FieldCheck:
    allowed = frozenset(member.value for member in enum)

    def check(value):
        if not _is_int(value) or value not in allowed:
            raise ValueError(f"expected one of {sorted(allowed)}, got {value!r:.80}")
        return enum(value)
    return check


def exact_bytes(size: int) -> FieldCheck:
    def check(value):
        if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != size:
            raise ValueError(f"expected {size} bytes, got {value!r:.80}")
        return bytes(value)
    return check


def any_bytes(value: Any) -> bytes:
    return bytes(bytes_like(value))


def bytes_like(value: Any):
    """``value`` itself, if it is bytes, a bytearray or a memoryview (not copied)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected bytes, got {type(value).__name__}")
    return value


def version_vector(value: Any) -> Dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return {text(origin): _u64(seq) for origin, seq in value.items()}


def text_list(max_items: int) -> FieldCheck:
    def check(value):
        if not isinstance(value, (list, tuple)) or len(value) > max_items:
            raise ValueError(f"expected a list of at most {max_items} strings")
        return tuple(text(item) for item in value)
    return check


def dict_list(max_items: Optional[int] = None) -> FieldCheck:
    def check(value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(item, dict) for item in value):
            raise ValueError("expected a list of objects")
        if max_items is not None and len(value) > max_items:
            raise ValueError(f"{len(value)} items, more than {max_items}")
        return tuple(value)
    return check


_u64 = unsigned(64)


# --- codecs -----------------------------------------------------------------

class JsonCodec:
    """Payload is a UTF-8 JSON object with exactly the message's fields."""

    def __init__(self, cls: type, fields: Mapping[str, FieldCheck]):
        self.cls = cls
        self.fields = dict(fields)

    def encode(self, msg) -> bytes:
        obj = {name: check(getattr(msg, name)) for name, check in self.fields.items()}
        return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False,
                           allow_nan=False, reject_bytes=True).encode("utf-8")

    def decode(self, payload):
        if isinstance(payload, memoryview):
            payload = bytes(payload)  # ujson reads bytes and bytearray only
        try:
            obj = ujson.loads(payload)
        except (ValueError, OverflowError, RecursionError) as exc:
            raise MalformedMessage(f"{self.cls.__name__}: invalid JSON: {exc}") from None
        if not isinstance(obj, dict) or obj.keys() != self.fields.keys():
            raise MalformedMessage(f"{self.cls.__name__}: expected an object with keys {sorted(self.fields)}")
        return _build(self.cls, self.fields, obj)


class StructCodec:
    """Payload is fixed binary fields (``layout``), optionally after a constant
    ``magic`` and before a ``trailing`` field that takes the remaining bytes:
    decoded as a memoryview of the payload when ``trailing_view`` (a large
    block's data is not copied; its field's check must keep it a view)."""

    def __init__(self, cls: type, layout: str, fields: Mapping[str, FieldCheck],
                 magic: bytes = b"", trailing: Optional[str] = None,
                 rule: Optional[Callable[[Any], None]] = None, trailing_view: bool = False):
        self.cls = cls
        self.layout = struct.Struct(layout)
        self.fields = dict(fields)
        self.magic = magic
        self.trailing = trailing
        self.trailing_view = trailing_view
        self.rule = rule  # cross-field check: raises ValueError
        self.fixed_size = len(magic) + self.layout.size
        self.fixed_names = [name for name in self.fields if name != trailing]

    def encode(self, msg) -> bytes:
        values = {name: check(getattr(msg, name)) for name, check in self.fields.items()}
        if self.rule is not None:
            self.rule(msg)
        head = self.magic + self.layout.pack(*(values[name] for name in self.fixed_names))
        return head + values[self.trailing] if self.trailing else head

    def decode(self, payload):
        size = len(payload)
        if size < self.fixed_size or (self.trailing is None and size != self.fixed_size):
            raise MalformedMessage(f"{self.cls.__name__}: payload of {size} bytes, "
                                   f"expected {'at least ' if self.trailing else ''}{self.fixed_size}")
        with memoryview(payload) as view:
            if view[:len(self.magic)] != self.magic:
                raise MalformedMessage(f"{self.cls.__name__}: bad magic")
            raw = dict(zip(self.fixed_names, self.layout.unpack_from(view, len(self.magic))))
            if self.trailing:
                rest = view[self.fixed_size:]
                raw[self.trailing] = rest if self.trailing_view else bytes(rest)
        msg = _build(self.cls, self.fields, raw)
        if self.rule is not None:
            try:
                self.rule(msg)
            except ValueError as exc:
                raise MalformedMessage(f"{self.cls.__name__}: {exc}") from None
        return msg


class BatchCodec:
    """Payload is a u16 count (1 to ``max_items``) and that many payloads of
    ``item`` (a StructCodec), each after a u32 length when ``item`` has a
    trailing field; ``rule`` checks each decoded item (raises ValueError)."""

    COUNT = struct.Struct(">H")
    LENGTH = struct.Struct(">I")

    def __init__(self, cls: type, field: str, item: StructCodec, max_items: int,
                 rule: Optional[Callable[[Any], None]] = None):
        self.cls, self.field, self.item, self.max_items, self.rule = cls, field, item, max_items, rule

    def encode(self, msg) -> bytes:
        items = getattr(msg, self.field)
        if not isinstance(items, (list, tuple)) or not 1 <= len(items) <= self.max_items:
            raise ValueError(f"{self.cls.__name__}: expected 1 to {self.max_items} items")
        parts = [self.COUNT.pack(len(items))]
        for item in items:
            if type(item) is not self.item.cls:
                raise ValueError(f"{self.cls.__name__}: an item is not a {self.item.cls.__name__}")
            if self.rule is not None:
                self.rule(item)
            payload = self.item.encode(item)
            if self.item.trailing:
                parts.append(self.LENGTH.pack(len(payload)))
            parts.append(payload)
        return b"".join(parts)

    def decode(self, payload):
        name = self.cls.__name__
        size = len(payload)
        with memoryview(payload) as view:
            if size < self.COUNT.size:
                raise MalformedMessage(f"{name}: payload of {size} bytes, no count")
            (count,) = self.COUNT.unpack_from(view, 0)
            if not 1 <= count <= self.max_items:
                raise MalformedMessage(f"{name}: {count} items, expected 1 to {self.max_items}")
            items, at = [], self.COUNT.size
            for _ in range(count):
                length = self.item.fixed_size
                if self.item.trailing:
                    if at + self.LENGTH.size > size:
                        raise MalformedMessage(f"{name}: truncated item length")
                    (length,) = self.LENGTH.unpack_from(view, at)
                    at += self.LENGTH.size
                if at + length > size:
                    raise MalformedMessage(f"{name}: an item of {length} bytes runs past the payload")
                item = self.item.decode(view[at:at + length])
                at += length
                if self.rule is not None:
                    try:
                        self.rule(item)
                    except ValueError as exc:
                        raise MalformedMessage(f"{name}: {exc}") from None
                items.append(item)
            if at != size:
                raise MalformedMessage(f"{name}: {size - at} bytes after the last item")
        return self.cls(**{self.field: tuple(items)})


def _small_request(msg: BlockRequest) -> None:
    if msg.size > limits.SMALL_BLOCK:
        raise ValueError(f"a batched request for {msg.size} bytes, more than {limits.SMALL_BLOCK}")


def _small_reply(msg: BlockData) -> None:
    if len(msg.data) > limits.SMALL_BLOCK:
        raise ValueError(f"a batched block of {len(msg.data)} bytes, more than {limits.SMALL_BLOCK}")


def _build(cls: type, fields: Mapping[str, FieldCheck], raw: Mapping[str, Any]):
    try:
        return cls(**{name: check(raw[name]) for name, check in fields.items()})
    except ValueError as exc:
        raise MalformedMessage(f"{cls.__name__}: {exc}") from None


def _data_only_when_ok(msg: BlockData) -> None:
    if msg.status != BlockStatus.OK and msg.data:
        raise ValueError("a BlockData without status OK must carry no data")


_u8, _u16, _u32 = unsigned(8), unsigned(16), unsigned(32)
_hash = exact_bytes(HASH_SIZE)

Codec = Union[JsonCodec, StructCodec, BatchCodec]

_BLOCK_REQUEST = StructCodec(BlockRequest, ">II32s", {"req_id": _u32, "size": _u32, "hash": _hash})
_BLOCK_DATA = StructCodec(BlockData, ">IB32s", {"req_id": _u32, "status": one_of(BlockStatus),
                                                "hash": _hash, "data": any_bytes},
                          trailing="data", rule=_data_only_when_ok)
# a BlockData alone in its frame (every large block): its data is a view of the payload, not a copy
_BLOCK_DATA_ALONE = StructCodec(BlockData, ">IB32s", {**_BLOCK_DATA.fields, "data": bytes_like},
                                trailing="data", rule=_data_only_when_ok, trailing_view=True)

CODECS: Dict[int, Codec] = {
    MsgType.HELLO: JsonCodec(Hello, {"name": text, "port": _u16, "version": _u16}),
    MsgType.SUMMARY: JsonCodec(Summary, {"vv": version_vector}),
    MsgType.EVENTS: JsonCodec(Events, {"events": dict_list(limits.MAX_EVENTS_PER_BATCH)}),
    MsgType.BLOCK_REQUEST: _BLOCK_REQUEST,
    MsgType.BLOCK_DATA: _BLOCK_DATA_ALONE,
    MsgType.BLOCK_REQUESTS: BatchCodec(BlockRequests, "requests", _BLOCK_REQUEST, limits.MAX_BLOCKS_PER_FRAME,
                                       rule=_small_request),
    MsgType.BLOCKS_DATA: BatchCodec(BlocksData, "blocks", _BLOCK_DATA, limits.MAX_BLOCKS_PER_FRAME,
                                    rule=_small_reply),
    MsgType.PING: StructCodec(Ping, ">Q", {"nonce": _u64}),
    MsgType.PONG: StructCodec(Pong, ">Q", {"nonce": _u64}),
    MsgType.ERROR: JsonCodec(Error, {"code": text, "message": text}),
    MsgType.BYE: JsonCodec(Bye, {"reason": text}),
    MsgType.LIST_REQUEST: JsonCodec(ListRequest, {"req_id": _u32, "path": text}),
    MsgType.LIST_REPLY: JsonCodec(ListReply, {"req_id": _u32, "entries": dict_list()}),
    MsgType.NEIGHBORS: JsonCodec(Neighbors, {"ids": text_list(limits.MAX_CONNECTIONS)}),
    MsgType.HAVE: JsonCodec(Have, {"vv": version_vector, "files": _u64, "bytes": _u64}),
    MsgType.HANDSHAKE_HELLO: StructCodec(HandshakeHello, ">B32s32s",
                                         {"version": _u8, "ephemeral": exact_bytes(KEY_SIZE),
                                          "random": exact_bytes(RANDOM_SIZE)},
                                         magic=HANDSHAKE_MAGIC),
    MsgType.HANDSHAKE_AUTH: StructCodec(HandshakeAuth, ">32s64s",
                                        {"identity": exact_bytes(KEY_SIZE),
                                         "signature": exact_bytes(SIGNATURE_SIZE)}),
}

_TYPE_OF_CLASS: Dict[type, int] = {codec.cls: code for code, codec in CODECS.items()}


def event_batches(events: Iterable[dict]) -> Iterator[Tuple[dict, ...]]:
    """Event dicts in batches for ``Events`` messages: at most
    ``limits.MAX_EVENTS_PER_BATCH`` events and ``limits.EVENTS_BATCH_BYTES``
    of JSON each (an event larger than that goes alone), so a batch of
    events with long block lists never exceeds ``limits.MAX_FRAME``."""
    batch: list = []
    size = 0
    for event in events:
        n = len(ujson.dumps(event, ensure_ascii=False, escape_forward_slashes=False).encode("utf-8")) + 1
        if batch and (len(batch) >= limits.MAX_EVENTS_PER_BATCH or size + n > limits.EVENTS_BATCH_BYTES):
            yield tuple(batch)
            batch, size = [], 0
        batch.append(event)
        size += n
    if batch:
        yield tuple(batch)


def encode_message(msg: Message) -> Frame:
    """Return the frame (flags 0) carrying ``msg``. ValueError if a field is
    out of range; TypeError if ``msg`` is not a message."""
    code = _TYPE_OF_CLASS.get(type(msg))
    if code is None:
        raise TypeError(f"not a message: {type(msg).__name__}")
    return Frame(int(code), 0, CODECS[code].encode(msg))


def decode_message(frame: Frame) -> Message:
    """Return the message in ``frame``; raises a WireError for bad input."""
    if frame.flags:
        raise MalformedMessage(f"frame reached the message layer with flags {frame.flags:#x}")
    codec = CODECS.get(frame.type)
    if codec is None:
        raise UnknownMessageType(f"unknown message type {frame.type:#04x}")
    return codec.decode(frame.payload)
