"""The home's private parts: ``HOME/.p2p/`` (mode 0700, every directory in it
too), every file in it and ``HOME/events.jsonl`` (mode 0600).

New files and directories are created with these modes explicitly (never
left to the umask) through ``create_private``; ``make_home_private`` runs at
every start of ``p2p run``: it creates ``.p2p`` 0700 and tightens the entries
at its top and the event log; a home made by an older p2p (``.p2p`` not
0700) has every entry in it walked, once. Inside a 0700 ``.p2p`` the blocks'
fan-out directories are out of every other user's reach, so they are not
walked at every start. The shared folder is not touched: its modes are the user's.

Plain blocking code with no sockets; the node calls it before anything else
opens the home.
"""

from __future__ import annotations

import os
import stat as statmod
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
EVENT_LOG = "events.jsonl"
IDENTITY_KEY = "identity.key"   # identity.KEY_FILE: too open, it is refused there, never re-chmodded here


def create_private(path, flags: int = os.O_WRONLY) -> int:
    """Open ``path`` for writing, created 0600 whatever the umask; an existing
    file keeps its content and is made 0600 too. Returns the descriptor."""
    fd = os.open(path, flags | os.O_CREAT, PRIVATE_FILE)
    try:
        if statmod.S_IMODE(os.fstat(fd).st_mode) != PRIVATE_FILE:
            os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_dir_private(path: Path) -> None:
    """Create a directory 0700 (or make an existing one 0700)."""
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        pass
    if statmod.S_IMODE(os.lstat(path).st_mode) != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)


def make_home_private(home: Path) -> int:
    """Create ``HOME/.p2p`` 0700; tighten its top entries, the event log with
    its torn-line files, and, when ``.p2p`` itself was not private (an older
    p2p made it), every entry in it. Returns how many entries were tightened."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    private = home / ".p2p"
    try:
        was_private = statmod.S_IMODE(os.lstat(private).st_mode) == PRIVATE_DIR
    except FileNotFoundError:
        was_private = True   # new: everything in it is created private
    tightened = 0 if was_private else 1
    make_dir_private(private)
    if not was_private:   # a home from an older p2p: once, everything in it
        for dirpath, dirnames, filenames in os.walk(private):
            for name in dirnames:
                tightened += _tighten(os.path.join(dirpath, name), PRIVATE_DIR)
            for name in filenames:
                tightened += _tighten(os.path.join(dirpath, name), PRIVATE_FILE)
    else:                 # a few entries: whatever a tool other than p2p run made in it
        for entry in os.scandir(private):
            tightened += _tighten(entry.path, PRIVATE_DIR if entry.is_dir(follow_symlinks=False) else PRIVATE_FILE)
    for entry in os.scandir(home):
        if entry.name == EVENT_LOG or entry.name.startswith(EVENT_LOG + ".torn-"):
            tightened += _tighten(entry.path, PRIVATE_FILE)
    return tightened


def _tighten(path: str, mode: int) -> int:
    """chmod ``path`` to ``mode`` if it differs (never through a symbolic link,
    never the identity key); 1 if changed."""
    if os.path.basename(path) == IDENTITY_KEY:
        return 0
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if statmod.S_ISLNK(st.st_mode) or statmod.S_IMODE(st.st_mode) == mode:
        return 0
    os.chmod(path, mode)
    return 1
