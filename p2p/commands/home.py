"""What a read-only command (``p2p log``, ``restore``, ``status``) finds in
``--home``: whether it holds a history, said the same way by each. Only looks:
nothing here creates a file or directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

HISTORY = "events.jsonl"


def no_history(home) -> Optional[str]:
    """Why ``home`` has no history to read (one line), or None when it has one."""
    where = os.path.abspath(home)
    try:
        size = (Path(home) / HISTORY).stat().st_size
    except FileNotFoundError:
        if not Path(home).is_dir():
            return f"{where} does not exist (--home names the directory where `p2p run` keeps {HISTORY})"
        return f"no history in {where} (no {HISTORY}): `p2p run` records one from its first start there"
    if size == 0:
        return f"the history in {where} is empty: no change recorded yet"
    return None
