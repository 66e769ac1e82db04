"""Text a peer chose that we show to people: made safe for a terminal.

A peer's name (from its discovery announce or its Hello) reaches ``p2p
status``, ``p2p ls``, the logs and the status dashboard. A stranger could put
terminal escapes in it (ESC sequences that move the cursor, set the window
title, hide lines, or worse), carriage returns that overwrite a log line, or
Unicode bidirectional controls that reorder what is shown. ``display_name``
removes every such character: C0 and C1 controls, DEL, format characters
(Unicode category Cf: bidi overrides, zero-width joiners) and line or
paragraph separators, and caps the length.

Pure: a string in, a string out.
"""

from __future__ import annotations

import unicodedata

MAX_NAME = 64           # characters of a peer's name we keep (announces carry at most this)
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})   # controls, format, separators, unassigned


def display_name(text: str) -> str:
    """``text`` without characters that steer a terminal, at most MAX_NAME long."""
    if text.isascii() and text.isprintable():
        return text[:MAX_NAME]
    return "".join(c for c in text if unicodedata.category(c) not in _UNSAFE)[:MAX_NAME]
