"""Which relative paths may appear in the shared folder and in events.

Pure: no file system, no clock. ``check_path`` is the single gate every path
from a peer (or from the local scanner) goes through before it can name a file,
so an event can never write outside the folder, onto a device name, or over
p2p's own files.
"""

from __future__ import annotations

import functools
import re
import unicodedata

MAX_PATH_BYTES = 4096        # Linux PATH_MAX
MAX_SEGMENT_BYTES = 255      # NAME_MAX on every common file system

INTERNAL_TOP_LEVEL = (".p2p", "events.jsonl", ".p2p-folder")   # the home may be the folder itself;
                                                                # .p2p-folder is the folder marker
INTERNAL_TOP_LEVEL_PREFIX = "events.jsonl."     # events.jsonl.torn-<time> and friends
TEMP_PREFIX = ".p2p-tmp-"                       # files being assembled, anywhere: the prefix and
TEMP_TOKEN_HEX = 16                             # 16 lowercase hex digits; other names are the user's
PATH_CACHE = 65536                              # recently validated paths (a replay sees each many times)

_TEMP_NAME = re.compile(r"\.p2p-tmp-[0-9a-f]{%d}\Z" % TEMP_TOKEN_HEX)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)]
)


class UnsafePath(ValueError):
    """A path that must not name a file in the shared folder; the message says why."""


def is_internal(path: str) -> bool:
    """True for p2p's own files (``.p2p/``, ``events.jsonl``, the folder
    marker, and temporary files ``.p2p-tmp-`` + 16 hex digits)."""
    first = path.partition("/")[0]
    if first in INTERNAL_TOP_LEVEL or first.startswith(INTERNAL_TOP_LEVEL_PREFIX):
        return True
    return TEMP_PREFIX in path and any(is_temp_name(segment) for segment in path.split("/"))   # (rare: 10x faster)


def is_temp_name(name: str) -> bool:
    """A temporary file p2p made (a file the user named ``.p2p-tmp-notes`` is not)."""
    return _TEMP_NAME.match(name) is not None


def shown(path: str) -> str:
    """``path`` as valid UTF-8 text for display and JSON; never raises. The
    undecodable bytes of a non-UTF-8 name (surrogate escapes, as ``os.walk``
    gives them) are shown as ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return path.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def check_path(path) -> str:
    """Return ``path`` in Unicode NFC if it is a safe relative POSIX path, else raise UnsafePath."""
    if not isinstance(path, str):
        raise UnsafePath(f"path must be a string, not {type(path).__name__}")
    return _check_text(path)


@functools.lru_cache(maxsize=PATH_CACHE)
def _check_text(path: str) -> str:
    """check_path for a str; cached, as the same paths come back in event after event."""
    if not path:
        raise UnsafePath("empty path")
    try:
        path = unicodedata.normalize("NFC", path)
        size = len(path.encode("utf-8"))
    except UnicodeError:
        raise UnsafePath(f"path {path!r} is not valid Unicode (UTF-8)") from None
    if size > MAX_PATH_BYTES:
        raise UnsafePath(f"path is {size} bytes long (limit {MAX_PATH_BYTES})")
    if path.startswith("/"):
        raise UnsafePath(f"absolute path {path!r}")
    if "\\" in path:
        raise UnsafePath(f"backslash in path {path!r}")
    if _CONTROL.search(path):
        raise UnsafePath(f"NUL or control character in path {path!r}")
    segments = path.split("/")
    if _DRIVE.match(segments[0]):
        raise UnsafePath(f"Windows drive prefix in path {path!r}")
    for segment in segments:
        _check_segment(segment, path)
    if is_internal(path):
        raise UnsafePath(f"path {path!r} names one of p2p's internal files")
    return path


def _check_segment(segment: str, path: str) -> None:
    if segment in ("", ".", ".."):
        raise UnsafePath(f"empty, '.' or '..' segment in path {path!r}")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise UnsafePath(f"a name in path {path!r} is longer than {MAX_SEGMENT_BYTES} bytes")
    if segment.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        raise UnsafePath(f"Windows reserved name {segment!r} in path {path!r}")
