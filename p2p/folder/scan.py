"""Turn what is on disk into change records, by comparing it with the local state.

``Scanner.observe(path)`` stats one path and, when it differs from what the
local state remembers, hashes it into the block store (or, for a small file
and a caller that stores many at once, into its ``held`` list) and returns a
``Change``; ``Scanner.walk()`` lists every syncable path, and
``Scanner.changed()`` those of the start-up scan that may differ from the
local state. Blocking code: the node runs it in the thread pool. Symbolic
links are skipped (never followed), as are internal and ignored paths.

A name that no event can carry (``check_path``: control characters,
backslashes, Windows reserved names, names that are not UTF-8, ...) raises
``NotSynced`` with the reason, so the caller lists it as not synced; what is
inside such a directory is neither walked nor reported (the directory is). A
name in another Unicode form than NFC is renamed on disk to its NFC form
(``Renamed``: scan the new name), unless that name exists too.
"""

from __future__ import annotations

import logging
import os
import stat as statmod
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from p2p import limits
from p2p.blocks.chunking import FileChanged, hash_file, read_blocks
from p2p.blocks.store import BlockStore
from p2p.folder.state import PERMISSIONS, Entry, LocalState, file_signature
from p2p.history.paths import UnsafePath, check_path, is_internal, is_temp_name

log = logging.getLogger("p2p.scan")
LOOK_UP = object()   # Scanner.observe's entry when the caller has not read it


@dataclass(slots=True)
class Change:
    """One path whose disk state differs from the local state; never changed
    once made (not a frozen dataclass: its ``__init__``, one
    ``object.__setattr__`` call per field, cost a scanned file 21k
    instructions, this one's 8k)."""
    path: str
    kind: str                 # "file" or "dir"
    deleted: bool
    size: int = 0
    mode: int = 0
    mtime: int = 0
    hash: str = ""
    blocks: Tuple[Tuple[str, int], ...] = ()
    stat: Optional[os.stat_result] = None
    stored: bool = True       # the blocks are in the store (large files: archived after)

    def entry(self, event_id: str) -> Entry:
        return Entry.from_stat(self.stat, self.hash, event_id)


class Scanner:
    def __init__(self, root: Path, state: LocalState, store: BlockStore,
                 ignored: Callable[[str], bool] = lambda path: False):
        self.root = root
        self._root = os.path.join(root, "")   # with its final separator: a path is appended
        self.state = state
        self.store = store
        self.ignored = ignored
        self.keep_temporaries: frozenset = frozenset()   # interrupted transfers that will resume

    def syncable(self, path: str) -> bool:
        return bool(path) and not is_internal(path) and not self.ignored(path)

    def observe(self, path: str, entry=LOOK_UP, held: Optional[list] = None) -> Optional[Change]:
        """The change at ``path`` since the local state (``entry``, when the
        caller read it already), or None if unchanged. With ``held``, a file
        of at most ``limits.PACKED_BLOCK_MAX`` bytes is not stored: its block
        is appended to ``held`` as (hash, bytes), for the caller to store
        (``BlockStore.put_many``) before it uses the change."""
        if not self.syncable(path):
            return None
        if entry is LOOK_UP:
            entry = self.state.get(path)
        full = self._root + path   # (a str: a Path per path costs more than its lstat)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if entry is not None and st is not None and entry.same_stat(st):
            return None   # (the common case first: a regular file or a directory, as recorded)
        if st is None or statmod.S_ISLNK(st.st_mode) or not (statmod.S_ISREG(st.st_mode) or statmod.S_ISDIR(st.st_mode)):
            if entry is None:
                return None
            return Change(path, entry.kind, deleted=True)
        if entry is None and not self._check_name(path, st):
            return None  # inside a directory whose own name is reported (or renamed)
        if statmod.S_ISDIR(st.st_mode):
            return Change(path, "dir", False, mode=statmod.S_IMODE(st.st_mode) & PERMISSIONS, mtime=st.st_mtime_ns, stat=st)
        large = st.st_size > limits.ARCHIVE_LATER_MIN
        try:   # (the file read must be the one ``st`` describes, unchanged: checked on its descriptor)
            if held is not None and st.st_size <= limits.PACKED_BLOCK_MAX:
                size, digest, blocks = read_blocks(full, on_block=lambda block_hash, data, fd, offset:
                                                   held.append((block_hash, bytes(data))), expect=st)
            else:
                size, digest, blocks = (hash_file if large else self.store.ingest_file)(full, expect=st)
        except FileChanged:
            raise FileBusy(path) from None  # still being written: the watcher will report it again
        return Change(path, "file", False, size=size, mode=statmod.S_IMODE(st.st_mode) & PERMISSIONS,
                      mtime=st.st_mtime_ns, hash=digest, blocks=tuple(blocks), stat=st, stored=not large)

    def walk(self, top: str = "", remove_temporaries: bool = False) -> Iterator[str]:
        """Every syncable path at or under ``top`` on disk, parents before children.

        With ``remove_temporaries`` (the start-up scan, before any transfer
        starts), leftover temporary files of an interrupted write are removed,
        except ``keep_temporaries`` (transfers that resume). Paths whose names
        cannot be synced are listed too (``observe`` says why), but
        directories with such names are not entered.
        """
        base = self.root / top if top else self.root
        if top:
            if not self.syncable(top):
                return
            yield top
            if not is_event_path(top):
                return
        for rel_dir, dirs, dirnames, files in self._listing(base, remove_temporaries):
            keep = []
            for name in dirnames:
                rel = self._join(rel_dir, name)
                if self.syncable(rel) and not dirs[name].is_symlink():
                    if is_event_path(rel):
                        keep.append(name)
                    yield rel
            dirnames[:] = keep
            for file in files:
                rel = self._join(rel_dir, file.name)
                if self.syncable(rel):
                    yield rel

    def changed(self, remove_temporaries: bool = False, watch: Optional[Callable[[str, bool], None]] = None
                ) -> Iterator[str]:
        """The start-up scan's paths: those of ``walk()`` but the ones ``observe``
        would find as the local state recorded them (a file with the same
        stat, a directory still a directory), which it leaves out, plus the
        recorded paths gone from disk and what was recorded under them. One
        ``LocalState.children`` query per directory and one lstat per file
        (the directory listing's), instead of a lookup of every path and a
        second pass over each.

        ``watch(directory, recursive)`` (the watcher's) is called with each
        directory before it is listed, and with each directory not entered
        (``recursive``: what is under it too, unless it is a link); if the
        listing stops before its end, with the folder itself, recursive."""
        listed = False
        try:
            yield from self._changed(remove_temporaries, watch)
            listed = True
        finally:
            if watch is not None and not listed:
                watch(os.fspath(self.root), True)   # (watchdog's walk: no directory left unwatched)

    def _changed(self, remove_temporaries: bool, watch) -> Iterator[str]:
        unlisted: List[OSError] = []   # directories that could not be listed: observe says why, of each path
        for rel_dir, dirs, dirnames, files in self._listing(self.root, remove_temporaries, unlisted.append, watch):
            yield from self._recorded_inside(unlisted)
            recorded = self.state.children(rel_dir)
            keep = []
            for name in dirnames:
                rel, entry = self._join(rel_dir, name), recorded.pop(name, None)
                if not self.syncable(rel) or dirs[name].is_symlink():
                    if entry is not None:   # (a directory replaced by a link: gone, as is what it held)
                        yield rel
                        yield from self._recorded_under(rel, entry)
                    continue
                if is_event_path(rel):
                    keep.append(name)
                elif entry is not None:
                    yield from self._recorded_under(rel, entry)
                if entry is None or entry[0] != "dir":
                    yield rel
            dirnames[:] = keep
            for file in files:
                name = file.name
                rel, entry = self._join(rel_dir, name), recorded.pop(name, None)
                if not self.syncable(rel):
                    continue
                if entry is not None:
                    try:
                        if entry[1:] == file_signature(file.stat(follow_symlinks=False)):
                            continue
                    except OSError:
                        pass            # gone meanwhile: observe says so
                    yield from self._recorded_under(rel, entry)   # (a directory replaced by a file)
                yield rel
            for name, entry in recorded.items():   # recorded, and no longer on disk
                rel = self._join(rel_dir, name)
                yield rel
                yield from self._recorded_under(rel, entry)
        yield from self._recorded_inside(unlisted)

    def _listing(self, base, remove_temporaries: bool, onerror=None, watch=None) -> Iterator[Tuple[str, dict, list, list]]:
        """The directories at and under ``base``, top-down, as ``os.walk`` lists
        them (a link to a directory is among the directories, not entered),
        but from one ``os.scandir`` each, whose entries it keeps: (the
        directory's path in the folder, name -> entry of its directories, their
        names sorted, the entries of its files sorted by name); temporary files
        left out (removed, with ``remove_temporaries``, unless kept). The caller
        trims the directory names to those to enter. A directory that cannot
        be listed is passed to ``onerror`` (its OSError) and skipped. With
        ``watch``, as ``changed`` says."""
        rel = os.path.relpath(base, self.root)
        todo = [("" if rel == "." else rel.replace(os.sep, "/"), os.fspath(base))]
        while todo:
            rel_dir, dirpath = todo.pop()
            if watch is not None:
                watch(dirpath, False)
            try:
                with os.scandir(dirpath) as listing:
                    found = list(listing)
            except OSError as exc:
                if onerror is not None:
                    onerror(exc)
                continue
            dirs, files = {}, []
            for entry in found:
                try:
                    is_dir = entry.is_dir()   # (d_type: no system call, but to follow a link)
                except OSError:
                    is_dir = False
                if is_dir:
                    dirs[entry.name] = entry
                elif not is_temp_name(entry.name):
                    files.append(entry)
                elif remove_temporaries and self._join(rel_dir, entry.name) not in self.keep_temporaries:
                    _remove_quietly(entry.path)
            files.sort(key=_name)
            dirnames = sorted(dirs)
            yield rel_dir, dirs, dirnames, files
            todo.extend((self._join(rel_dir, name), dirs[name].path) for name in reversed(dirnames))
            if watch is not None:
                for name in dirs.keys() - set(dirnames):   # not entered
                    if not dirs[name].is_symlink():
                        watch(dirs[name].path, True)

    def _recorded_inside(self, unlisted: List[OSError]) -> Iterator[str]:
        """What the local state records inside the directories os.walk could not list."""
        while unlisted:
            rel = os.path.relpath(unlisted.pop().filename, self.root).replace(os.sep, "/")
            yield from self.state.under("" if rel == "." else rel)

    def _recorded_under(self, path: str, recorded: tuple) -> List[str]:
        """What the local state records inside ``path``, if it recorded a
        directory there (``recorded``: its ``LocalState.children`` signature)."""
        return self.state.under(path) if recorded[0] == "dir" else []

    @staticmethod
    def _join(rel_dir: str, name: str) -> str:
        return f"{rel_dir}/{name}" if rel_dir else name

    def _check_name(self, path: str, st: os.stat_result) -> bool:
        """True if ``path`` (a file or directory on disk, ``st``) can be an
        event's path as it is; False if a parent's name cannot (that parent is
        observed itself). Raises NotSynced if its own name cannot, and Renamed
        once an NFD (or other non-NFC) name has been given its NFC form."""
        try:
            if check_path(path) == path:
                return True
            problem = None
        except UnsafePath as exc:
            problem = str(exc)
        parent = path.rpartition("/")[0]
        if parent and not is_event_path(parent):
            return False
        if problem is not None:
            raise NotSynced(path, problem)
        nfc = unicodedata.normalize("NFC", path)   # only the last name changes: the parent is NFC
        self._normalize(path, nfc, st)
        raise Renamed(path, nfc)

    def _normalize(self, path: str, nfc: str, st: os.stat_result) -> None:
        """Rename ``path`` to its NFC form ``nfc`` (as Syncthing's
        autoNormalize), never over another file: if ``nfc`` exists too,
        ``path`` is not synced."""
        src, dst = self.root / path, self.root / nfc
        twin = f"its NFC form {nfc!r} exists too: rename or remove one of the two"
        try:
            other = os.lstat(dst)
        except FileNotFoundError:
            other = None
        if other is not None and not os.path.samestat(other, st):
            raise NotSynced(path, twin)
        if statmod.S_ISDIR(st.st_mode) or other is not None:
            os.rename(src, dst)   # onto an empty directory at most, or itself (a normalising file system)
        else:
            try:
                os.link(src, dst)  # unlike rename, never replaces a twin made meanwhile
            except FileExistsError:
                raise NotSynced(path, twin) from None
            except OSError:        # no hard links on this file system
                os.rename(src, dst)
            else:
                os.unlink(src)
        log.info("renamed %a to its NFC form %a", path, nfc)


class FileBusy(Exception):
    """The file changed while it was being hashed."""


class NotSynced(Exception):
    """A path on disk whose name no event can carry; ``reason`` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(path, reason)
        self.path, self.reason = path, reason


class Renamed(Exception):
    """``path`` was renamed on disk to its NFC form ``new``: scan that instead."""

    def __init__(self, path: str, new: str):
        super().__init__(path, new)
        self.path, self.new = path, new


def is_event_path(path: str) -> bool:
    """True if ``path`` can name an event as it is (safe, and already NFC)."""
    try:
        return check_path(path) == path
    except UnsafePath:
        return False


def _name(entry: os.DirEntry) -> str:
    return entry.name


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
