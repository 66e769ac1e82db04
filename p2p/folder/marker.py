"""The folder marker: ``.p2p-folder`` in the synced folder's root (as
Syncthing's ``.stfolder``), so a folder that moved, was unmounted or was
replaced by an empty one is never taken for a folder whose files were all
deleted.

``prepare(root, history_events, recorded)`` runs at start: a new home makes
the folder and its marker; a home whose history already holds events needs
the folder with its marker, and refuses to start otherwise, with one line
saying what to run. While running, ``present(root)`` is checked before local
deletes are recorded and before remote versions are written: a folder whose
marker vanished is paused until it is back. Blocking code, no gevent.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Iterable

from p2p.history.paths import TEMP_PREFIX, TEMP_TOKEN_HEX

log = logging.getLogger("p2p.folder")

MARKER = ".p2p-folder"
MARKER_TEXT = ("This folder is synced by p2p. Keep this file: without it p2p will not sync the folder,\n"
               "so a moved or unmounted folder is never taken for one whose files were all deleted.\n")
ADOPT_SAMPLE = 1000          # recorded paths looked at when adopting a folder synced before markers existed


class FolderUnavailable(Exception):
    """The synced folder cannot be used as it is; the message says what to run."""


def present(root: Path) -> bool:
    return os.path.isfile(Path(root) / MARKER)


def write_marker(root: Path) -> None:
    path = Path(root) / MARKER
    tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(TEMP_TOKEN_HEX // 2)}")
    tmp.write_text(MARKER_TEXT, encoding="utf-8")
    os.replace(tmp, path)


def prepare(root: Path, home: Path, history_events: int, recorded: Iterable[str]) -> None:
    """Make sure ``root`` is the synced folder, or raise FolderUnavailable.

    ``recorded``: the paths the local state remembers (to adopt, once, a folder
    synced by a version of p2p that wrote no marker).
    """
    root, home = Path(root), Path(home)
    if present(root):
        return
    if history_events == 0:   # a new home: this is a new folder
        if not root.exists():
            if not root.parent.is_dir():
                raise FolderUnavailable(f"{root.parent} does not exist: is --root mistyped?")
            root.mkdir()
        elif not root.is_dir():
            raise FolderUnavailable(f"--root {root} is not a directory")
        write_marker(root)
        return
    fix = (f"if the folder moved, start with --root NEWPLACE; to bring its files back from the history, run "
           f"`p2p restore --home {home} --root {root} --at now`")
    if not root.exists():
        raise FolderUnavailable(f"the synced folder {root} is missing, but the history in {home} has "
                                f"{history_events} events: {fix}")
    if not root.is_dir():
        raise FolderUnavailable(f"--root {root} is not a directory")
    if _was_synced_here(root, recorded):
        log.info("adopting %s (synced before folder markers): writing %s", root, MARKER)
        write_marker(root)
        return
    raise FolderUnavailable(f"{root} has no {MARKER} marker, but the history in {home} has {history_events} "
                            f"events: it may be another folder, or one emptied or not mounted. {fix}; to sync it "
                            f"as it is (what is missing is deleted on every peer), run `touch {root / MARKER}`")


def _was_synced_here(root: Path, recorded: Iterable[str]) -> bool:
    """Most of the paths the local state recorded are on disk: the same folder."""
    seen = found = 0
    for path in recorded:
        seen += 1
        found += os.path.lexists(root / path)
        if seen >= ADOPT_SAMPLE:
            break
    return seen > 0 and found * 2 >= seen
