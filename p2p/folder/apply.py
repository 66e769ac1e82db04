"""Write remote versions into the folder without ever exposing a partial file
or overwriting a local edit silently.

A file is assembled from verified blocks into ``.p2p-tmp-*`` beside its
destination (the watcher ignores that prefix), fsynced, checked against the
event's hash, and only then renamed into place — after checking that the path
on disk is still exactly what the local state says. If it is not, the user
changed it meanwhile: ``LocalChanged`` is raised and the caller rescans it, so
the edit becomes an event and the conflict rules decide. Parents that are
symbolic links are refused, so a write never leaves the folder. Blocking code:
the node runs it in the thread pool.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat as statmod
from pathlib import Path

from p2p.blocks.store import BlockStore
from p2p.folder.scan import TEMP_PREFIX
from p2p.folder.state import Entry, LocalState


class LocalChanged(Exception):
    """The path on disk differs from the local state: rescan before writing."""


class UnsafeTarget(Exception):
    """Writing the path would go through a symbolic link or a non-directory."""


class FolderWriter:
    def __init__(self, root: Path, state: LocalState, store: BlockStore):
        self.root = root
        self.state = state
        self.store = store

    # -- checks ------------------------------------------------------------
    def _check_unchanged(self, path: str) -> None:
        entry = self.state.get(path)
        try:
            st = os.lstat(self.root / path)
        except FileNotFoundError:
            if entry is not None and entry.kind == "file":
                raise LocalChanged(path)  # deleted locally, not scanned yet
            return
        if entry is None or not entry.same_stat(st):
            raise LocalChanged(path)

    def _ensure_parents(self, path: str) -> None:
        """Create missing parent directories; refuse symlinks and files in the way."""
        parts = path.split("/")[:-1]
        current = self.root
        rel = ""
        for part in parts:
            current = current / part
            rel = f"{rel}/{part}" if rel else part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current)
                st = os.lstat(current)
                if self.state.get(rel) is None:
                    self.state.set(rel, Entry.from_stat(st, "", ""))
                continue
            if statmod.S_ISLNK(st.st_mode):
                raise UnsafeTarget(f"{path}: parent {rel} is a symbolic link")
            if not statmod.S_ISDIR(st.st_mode):
                raise LocalChanged(rel)

    # -- writes ------------------------------------------------------------
    def write_file(self, path: str, event) -> Entry:
        """Materialise the file content named by ``event`` at ``path``."""
        self._ensure_parents(path)
        dest = self.root / path
        tmp = dest.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}")
        try:
            digest = hashlib.sha256()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                for block_hash, _size in event.blocks:
                    data = self.store.get(block_hash)
                    digest.update(data)
                    _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if digest.hexdigest() != event.hash:
                raise ValueError(f"{path}: assembled content does not match the event's hash")
            os.chmod(tmp, event.mode & 0o7777 or 0o644)
            os.utime(tmp, ns=(event.mtime, event.mtime))
            self._check_unchanged(path)
            os.replace(tmp, dest)
        except BaseException:
            _remove_quietly(tmp)
            raise
        entry = Entry.from_stat(os.lstat(dest), event.hash, event.id)
        self.state.set(path, entry)
        return entry

    def make_dir(self, path: str, event) -> None:
        self._ensure_parents(path)
        dest = self.root / path
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            os.mkdir(dest, (event.mode & 0o7777) or 0o755)
            st = os.lstat(dest)
        if not statmod.S_ISDIR(st.st_mode):
            raise LocalChanged(path)
        self.state.set(path, Entry.from_stat(st, "", event.id))

    def remove(self, path: str) -> bool:
        """Remove a file, or a directory once it is empty. False if kept."""
        entry = self.state.get(path)
        dest = self.root / path
        if entry is None:
            return not os.path.lexists(dest)
        if entry.kind == "dir":
            try:
                os.rmdir(dest)
            except FileNotFoundError:
                pass
            except OSError:
                return False  # something new inside: it survives
            self.state.pop(path)
            return True
        self._check_unchanged(path)
        try:
            os.unlink(dest)
        except FileNotFoundError:
            pass
        self.state.pop(path)
        return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
