"""The event: one immutable change to one path of the shared folder.

Pure: no I/O, no clock. An ``Event`` validates itself when built, so an
instance always satisfies every rule of docs/EVENTS.md; ``from_dict`` is the
gate for events read from disk or from a peer and raises ``InvalidEvent`` with
the reason. ``to_json`` is the canonical form (sorted keys, compact, UTF-8,
optional ``None`` fields omitted): the same event is the same bytes everywhere.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import re
from dataclasses import dataclass, fields
from typing import Optional, Tuple

import ujson

from p2p import limits
from p2p.history.paths import UnsafePath, check_path

TYPES = ("create", "update", "delete")
KINDS = ("file", "dir", "symlink")
MAX_MODE = 0o7777
INT64 = 2 ** 63

_DEVICE_ID = re.compile(r"[A-Z2-7]{32}\Z")
_EVENT_ID = re.compile(r"([A-Z2-7]{32}):([1-9][0-9]*)\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")

Block = Tuple[str, int]


class InvalidEvent(ValueError):
    """An event (or its JSON) that breaks a rule of docs/EVENTS.md; the message says which."""


def is_device_id(text) -> bool:
    return isinstance(text, str) and _DEVICE_ID.match(text) is not None


def parse_event_id(text) -> Tuple[str, int]:
    """``"ORIGIN:SEQ"`` -> (origin, seq); raises InvalidEvent."""
    match = _EVENT_ID.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidEvent(f"bad event id {text!r} (want ORIGIN:SEQ)")
    return match.group(1), int(match.group(2))


def make_id(origin: str, seq: int) -> str:
    return f"{origin}:{seq}"


@dataclass(frozen=True)
class Event:
    id: str
    origin: str
    seq: int
    lamport: int
    type: str
    kind: str
    path: str
    size: int
    mode: int
    mtime: int
    hash: str
    blocks: Tuple[Block, ...]
    parents: Tuple[str, ...]
    time: float
    moved_from: Optional[str] = None
    moved_to: Optional[str] = None
    target: Optional[str] = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "blocks", _blocks(self.blocks))
        if not isinstance(self.parents, tuple):
            if not isinstance(self.parents, list):
                raise InvalidEvent("parents must be a list of event ids")
            set_(self, "parents", tuple(self.parents))
        if _is_int(self.time) and abs(self.time) < INT64:
            set_(self, "time", float(self.time))
        _validate(self)

    # -- conversions -------------------------------------------------------
    @classmethod
    def from_dict(cls, data) -> "Event":
        """Build and validate an event from its JSON object; raises InvalidEvent."""
        if not isinstance(data, dict):
            raise InvalidEvent(f"an event is a JSON object, not {type(data).__name__}")
        unknown = set(data) - FIELD_NAMES
        if unknown:
            raise InvalidEvent(f"unknown field(s) {sorted(unknown)}")
        missing = REQUIRED_FIELDS - set(data)
        if missing:
            raise InvalidEvent(f"missing field(s) {sorted(missing)}")
        try:
            return cls.of(data)
        except TypeError as exc:  # a field of the wrong type deep inside a comparison
            raise InvalidEvent(str(exc)) from None

    @classmethod
    def of(cls, fields: dict) -> "Event":
        """``Event(**fields)``, validated as any: for ``fields`` that name every
        required field and none but the fields (``from_dict`` checks; a local
        event's are). Without the dataclass's ``__init__`` (an
        ``object.__setattr__`` call per field), which every event read from
        the log or made by a scan went through: 81k -> 65k instructions for
        ``from_dict``, the same memory."""
        event = object.__new__(cls)
        values = event.__dict__
        for name in OPTIONAL_FIELDS:   # (one at a time, then ``update``: the dict keeps sharing the class's
            values[name] = None        # keys; the ``update`` of an empty dict takes a copy of the other's)
        values.update(fields)
        event.__post_init__()
        return event

    @classmethod
    def from_json(cls, line) -> "Event":
        try:
            data = ujson.loads(line)
        except ValueError as exc:
            raise InvalidEvent(f"not JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        data = self._fields()
        data["blocks"] = [[h, n] for h, n in self.blocks]
        data["parents"] = list(self.parents)
        return data

    def to_json(self) -> str:
        """The canonical one-line form (no trailing newline): ``canonical_json``
        of ``to_dict()``, from the fields already in key order (ujson's
        ``sort_keys`` took a third of the time) and the tuples as they are
        (ujson writes a tuple as a JSON array)."""
        return ujson.dumps(self._fields(), ensure_ascii=False, escape_forward_slashes=False)

    def _fields(self) -> dict:
        """The JSON object's fields, in sorted key order, optional ``None``
        fields left out; blocks and parents as the tuples they are."""
        data = {"blocks": self.blocks, "hash": self.hash, "id": self.id, "kind": self.kind,
                "lamport": self.lamport, "mode": self.mode}
        if self.moved_from is not None:
            data["moved_from"] = self.moved_from
        if self.moved_to is not None:
            data["moved_to"] = self.moved_to
        data.update(mtime=self.mtime, origin=self.origin, parents=self.parents, path=self.path, seq=self.seq,
                    size=self.size)
        if self.target is not None:
            data["target"] = self.target
        data["time"] = self.time
        data["type"] = self.type
        return data

    # -- convenience -------------------------------------------------------
    @property
    def is_delete(self) -> bool:
        return self.type == "delete"


def canonical_json(data: dict) -> str:
    return ujson.dumps(data, ensure_ascii=False, sort_keys=True, escape_forward_slashes=False)


FIELD_NAMES = frozenset(f.name for f in fields(Event))
OPTIONAL_FIELDS = ("moved_from", "moved_to", "target")
REQUIRED_FIELDS = FIELD_NAMES - set(OPTIONAL_FIELDS)


def _blocks(value) -> Tuple[Block, ...]:
    """``blocks`` as a tuple of (hash, size) pairs; a tuple of 2-tuples (a
    local event's, or an event's copied) is kept as it is."""
    if type(value) is tuple:
        for item in value:
            if type(item) is not tuple or len(item) != 2:
                break
        else:
            return value
    elif not isinstance(value, (list, tuple)):
        raise InvalidEvent("blocks must be a list of [hash, size] pairs")
    return tuple([_block(b) for b in value])


def _block(item) -> Block:
    if not isinstance(item, (list, tuple)) or len(item) != 2:
        raise InvalidEvent(f"a block is a [hash, size] pair, not {item!r}")
    return (item[0], item[1])


def _is_int(value) -> bool:
    return type(value) is int  # not bool, not a subclass


def _require_int(name: str, value, low: int, high: int) -> None:
    if type(value) is not int:
        raise InvalidEvent(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise InvalidEvent(f"{name} {value} out of range [{low}, {high}]")


def _event_path(name: str, value) -> None:
    try:
        checked = check_path(value)
    except UnsafePath as exc:
        raise InvalidEvent(f"{name}: {exc}") from None
    if checked != value:
        raise InvalidEvent(f"{name} {value!r} is not in Unicode NFC form")


def _validate(e: Event) -> None:
    if not is_device_id(e.origin):
        raise InvalidEvent(f"origin {e.origin!r} is not a device id (32 characters A-Z2-7)")
    _require_int("seq", e.seq, 1, INT64 - 1)
    if e.id != make_id(e.origin, e.seq):
        raise InvalidEvent(f"id {e.id!r} is not ORIGIN:SEQ ({make_id(e.origin, e.seq)!r})")
    _require_int("lamport", e.lamport, 1, INT64 - 1)
    if e.type not in TYPES:
        raise InvalidEvent(f"type {e.type!r} is not one of {TYPES}")
    if e.kind not in KINDS:
        raise InvalidEvent(f"kind {e.kind!r} is not one of {KINDS}")
    _event_path("path", e.path)
    _require_int("size", e.size, 0, INT64 - 1)
    _require_int("mode", e.mode, 0, MAX_MODE)
    _require_int("mtime", e.mtime, -INT64, INT64 - 1)
    if not isinstance(e.time, float) or not math.isfinite(e.time) or e.time < 0:
        raise InvalidEvent(f"time must be a finite number of seconds >= 0, not {e.time!r}")
    _validate_parents(e)
    _validate_content(e)
    _validate_move(e)


def _validate_parents(e: Event) -> None:
    for parent in e.parents:
        parse_event_id(parent)
    if len(set(e.parents)) != len(e.parents):
        raise InvalidEvent("parents has duplicates")
    if e.id in e.parents:
        raise InvalidEvent("an event cannot be its own parent")


def _validate_content(e: Event) -> None:
    if not isinstance(e.hash, str):
        raise InvalidEvent(f"hash must be a string, not {e.hash!r}")
    has_content = e.kind in ("file", "symlink") and e.type != "delete"
    if not has_content:
        if e.hash or e.blocks or e.size:
            raise InvalidEvent(f"a {e.type} of a {e.kind} has no content: hash, blocks and size must be empty")
    elif not _SHA256.match(e.hash):
        raise InvalidEvent(f"hash {e.hash!r} is not a lowercase sha256 hex digest")
    total = 0
    for block_hash, block_size in e.blocks:   # (blocks only with content: a one-block file's is its hash, checked)
        if block_hash != e.hash and (not isinstance(block_hash, str) or not _SHA256.match(block_hash)):
            raise InvalidEvent(f"block hash {block_hash!r} is not a lowercase sha256 hex digest")
        _require_int("block size", block_size, 1, limits.MAX_BLOCK)
        total += block_size
    if e.kind == "file" and e.type != "delete" and total != e.size:
        raise InvalidEvent(f"block sizes add up to {total}, not size {e.size}")
    if e.kind == "symlink" and e.type != "delete":
        _validate_target(e)
    elif e.target is not None:
        raise InvalidEvent("only a created or updated symlink has a target")
    if e.kind == "symlink" and e.blocks:
        raise InvalidEvent("a symlink has no blocks (its content is its target)")


def _validate_target(e: Event) -> None:
    target = e.target
    if not isinstance(target, str) or not target:
        raise InvalidEvent("a symlink needs a non-empty target")
    if target.startswith("/") or "\x00" in target or "\\" in target:
        raise InvalidEvent(f"symlink target {target!r} must be relative, POSIX, without NUL")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(e.path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise InvalidEvent(f"symlink target {target!r} points outside the folder")
    encoded = target.encode("utf-8", "surrogatepass")
    if e.size != len(encoded):
        raise InvalidEvent("a symlink's size is the byte length of its target")
    if e.hash != hashlib.sha256(encoded).hexdigest():
        raise InvalidEvent("a symlink's hash is the sha256 of its target")


def _validate_move(e: Event) -> None:
    for name, half in (("moved_from", "create"), ("moved_to", "delete")):
        other = getattr(e, name)
        if other is None:
            continue
        if e.type != half:
            raise InvalidEvent(f"{name} belongs to the {half} half of a rename")
        _event_path(name, other)
        if other == e.path:
            raise InvalidEvent(f"{name} equals path")
