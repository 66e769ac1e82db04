"""Write remote versions into the folder without ever exposing a partial file
or overwriting a local edit silently.

A file is written from verified blocks (each checked against its sha256 as it
arrives or as it is read from the store) into ``.p2p-tmp-*`` beside its
destination (the watcher ignores that prefix), at each block's offset, so a
large file is written once (a small file's blocks gather in memory and its
temporary file is created and written once they are all there); the whole
file is checked against the event's hash (``ContentMismatch``; hashed as the
blocks land, ``RunningHash``),
fsynced (a large file's blocks start reaching the disk as they land, so
little is left for that fsync), and only then renamed into place —
after checking that the path on disk is still exactly what the local state
says. If it is not, the user
changed it meanwhile: ``LocalChanged`` is raised and the caller rescans it, so
the edit becomes an event and the conflict rules decide. A symbolic link, a
FIFO, a socket or a device file at the path or at a parent is never written
through, replaced or removed (``UnsafeTarget``): a write never leaves the
folder, and never blocks on a FIFO. Where the file
system folds case (detected once per folder, with a probe file), a name that
differs only by case from one already on disk is refused too: writing it would
overwrite that other path. Blocking code: the node runs it in the thread pool.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import stat as statmod
from pathlib import Path
from typing import Optional

from p2p import limits
from p2p.blocks.store import BlockStore
from p2p.folder.running_hash import RunningHash
from p2p.folder.state import PERMISSIONS, Entry, LocalState
from p2p.history.paths import TEMP_PREFIX, TEMP_TOKEN_HEX


class LocalChanged(Exception):
    """The path on disk differs from the local state: rescan before writing."""


class ContentMismatch(OSError):
    """The file written does not hash to its event's hash (an event whose
    blocks do not make up its content, or a write the disk lost): never placed."""


class UnsafeTarget(Exception):
    """Writing ``path`` would go through or replace a symbolic link or a special
    file, or land on another path's file where the file system folds case;
    ``reason`` says which."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _special(st: os.stat_result) -> Optional[str]:
    """What a node is, if p2p must never write through or replace it."""
    mode = st.st_mode
    if statmod.S_ISLNK(mode):
        return "a symbolic link"
    if statmod.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if statmod.S_ISSOCK(mode):
        return "a socket"
    if statmod.S_ISCHR(mode) or statmod.S_ISBLK(mode):
        return "a device file"
    return None


def _refuse_special(path: str, rel: str, st: os.stat_result) -> None:
    """UnsafeTarget if ``rel`` (``path`` itself or one of its parents) is a link or special file."""
    what = _special(st)
    if what is not None:
        raise UnsafeTarget(path, f"{what} is in the way; p2p never replaces it" if rel == path
                           else f"parent {rel} is {what}")


def folds_case(directory: Path) -> bool:
    """True if the file system holding ``directory`` treats names that differ
    only by case as one name: a mixed-case probe file, removed at once."""
    probe = Path(directory) / f"{TEMP_PREFIX.upper()}{secrets.token_hex(TEMP_TOKEN_HEX // 2)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.close(fd)
        return os.path.lexists(probe.with_name(probe.name.lower()))
    finally:
        _remove_quietly(probe)


LOOK_UP = object()   # "read the path's entry from the local state" (the caller has not)


class FolderWriter:
    def __init__(self, root: Path, state: LocalState, store: BlockStore, case_folding: Optional[bool] = None):
        """``case_folding``: whether the folder's file system folds case;
        None detects it (once, at the first write)."""
        self.root = root
        self.state = state
        self.store = store
        self._case_folding = case_folding

    # -- checks ------------------------------------------------------------
    def _check_unchanged(self, path: str, entry=LOOK_UP, expected=LOOK_UP) -> None:
        """LocalChanged unless ``path`` on disk is what the local state records
        (``entry``: its record when the caller read it already), and (unless
        ``expected`` is LOOK_UP) that record is still ``expected``: a scan
        that recorded the user's new file since a version was decided on
        leaves the disk agreeing with the record, and the file is the user's."""
        if entry is LOOK_UP:
            entry = self.state.get(path)
        if expected is not LOOK_UP and entry != expected:
            raise LocalChanged(path)
        try:
            st = os.lstat(self.root / path)
        except FileNotFoundError:
            if entry is not None and entry.kind == "file":
                raise LocalChanged(path)  # deleted locally, not scanned yet
            return
        if entry is None:
            _refuse_special(path, path, st)   # never recorded: rescanning it would change nothing
            raise LocalChanged(path)
        if not entry.same_stat(st):
            raise LocalChanged(path)

    def _check_case(self, path: str) -> None:
        """Where the file system folds case, refuse a name (of the path or a
        parent) that differs only by case from an existing one."""
        if self._case_folding is None:
            self._case_folding = folds_case(self.root)
        if not self._case_folding:
            return
        current = self.root
        for part in path.split("/"):
            try:
                names = os.listdir(current)
            except (FileNotFoundError, NotADirectoryError):
                return  # nothing deeper exists to collide with
            folded = part.casefold()
            for name in names:
                if name != part and name.casefold() == folded:
                    raise UnsafeTarget(path, f"{part!r} differs only by case from {name!r} on this file system")
            current = current / part

    def _ensure_parents(self, path: str, create: bool = True) -> None:
        """Create missing parent directories (unless not ``create``: then stop
        at the first missing one); refuse symlinks, special files and files in
        the way."""
        parts = path.split("/")[:-1]
        root = str(self.root)
        rel = ""
        for part in parts:   # (strings, not Path objects: this runs in the hub for every file received)
            rel = f"{rel}/{part}" if rel else part
            current = f"{root}/{rel}"
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                if not create:
                    return
                try:
                    os.mkdir(current)
                except FileExistsError:   # made meanwhile (make_dirs, in a pool thread): look again
                    pass
                else:
                    st = os.lstat(current)
                    if self.state.get(rel) is None:
                        self.state.set(rel, Entry.from_stat(st, "", ""))
                    continue
                st = os.lstat(current)
            _refuse_special(path, rel, st)
            if not statmod.S_ISDIR(st.st_mode):
                raise LocalChanged(rel)

    def check_target(self, path: str) -> None:
        """Before fetching a version of ``path``: raise UnsafeTarget if a
        symbolic link or special file is at the path or a parent (nothing is
        changed on disk)."""
        self._ensure_parents(path, create=False)
        try:
            st = os.lstat(self.root / path)
        except (FileNotFoundError, NotADirectoryError):
            return
        _refuse_special(path, path, st)

    # -- writes ------------------------------------------------------------
    def begin_file(self, path: str, event, resume_as: Optional[str] = None) -> "PendingFile":
        """A temporary file beside ``path`` that blocks are written into as they
        arrive. ``resume_as``: the temporary file (relative to the folder) of an
        interrupted transfer of this version, reopened if it is there. A small
        file's blocks are gathered in memory and its temporary file created
        only when it is finished (``PendingFile.finish``, in the committing
        thread): no file creation in the caller (the hub)."""
        self._check_case(path)
        self._ensure_parents(path)
        if resume_as is None:
            tmp = (self.root / path).with_name(f"{TEMP_PREFIX}{secrets.token_hex(TEMP_TOKEN_HEX // 2)}")
            if event.size <= limits.SMALL_BLOCK:
                return PendingFile(self, path, event, tmp, -1)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            return PendingFile(self, path, event, tmp, fd)
        tmp = self.root / resume_as
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            return PendingFile(self, path, event, tmp, fd)
        if not statmod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeTarget(path, f"its temporary file {resume_as} is not a regular file")
        return PendingFile(self, path, event, tmp, fd, resumed=True)

    def write_file(self, path: str, event) -> Entry:
        """Materialise ``event``'s content at ``path`` from blocks already in the store."""
        pending = self.begin_file(path, event)
        try:
            pending.copy_from_store(pending.layout())
            return pending.commit()
        except BaseException:
            pending.abort()
            raise

    def make_dir(self, path: str, event) -> None:
        outcome, = self.make_dirs([(path, event)])
        if outcome is not None:
            raise outcome

    def make_dirs(self, dirs) -> list:
        """Make each (path, event) directory, parents first as listed, and
        record those made in one transaction of the local state. Returns
        each one's outcome: None, or what it raised (LocalChanged, UnsafeTarget, OSError, ...)."""
        outcomes: list = []
        made = []
        for path, event in dirs:
            try:
                made.append((path, self._make_dir(path, event)))
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        try:
            self.state.set_many(made)
        except Exception as exc:   # made, not recorded: each is retried
            outcomes = [exc if outcome is None else outcome for outcome in outcomes]
        return outcomes

    def _make_dir(self, path: str, event) -> Entry:
        """Make the directory on disk with the version's permissions; the Entry to record."""
        self._check_case(path)
        self._ensure_parents(path)
        dest = self.root / path
        mode = event.mode & PERMISSIONS or 0o755
        try:
            st = os.lstat(dest)
        except FileNotFoundError:   # made with its mode (less what the umask takes): a scan that sees it
            os.mkdir(dest, mode)    # before the chmod below must not find other permissions to record
            st = os.lstat(dest)
        if not statmod.S_ISDIR(st.st_mode):
            _refuse_special(path, path, st)
            raise LocalChanged(path)
        if statmod.S_IMODE(st.st_mode) != mode:   # the version's permissions, not the umask's
            os.chmod(dest, mode)
            st = os.lstat(dest)
        return Entry.from_stat(st, "", event.id)

    def intend_all(self, pendings) -> None:
        """``PendingFile.intend`` for a batch of finished files, in one
        transaction of the local state (all recorded, or none: the error is raised)."""
        self.state.intend_many([(pending.path, pending.prepare_entry()) for pending in pendings])

    def place_all(self, pendings) -> list:
        """``PendingFile.place`` for a batch whose intents are recorded and
        durable: one lookup of their entries, each renamed into place unless
        the user changed its path (LocalChanged), then one transaction records
        all that were placed. Returns each one's Entry, or what it raised."""
        current = self.state.get_many([pending.path for pending in pendings])
        outcomes: list = []
        placed = []
        for pending in pendings:
            try:
                self._check_unchanged(pending.path, current.get(pending.path), pending.expected)
                os.replace(pending.tmp, self.root / pending.path)
            except Exception as exc:
                pending.abort()
                outcomes.append(exc)
                continue
            placed.append(len(outcomes))
            outcomes.append(pending._entry)
        try:
            self.state.set_many([(pendings[i].path, outcomes[i]) for i in placed])
        except Exception as exc:   # placed, not recorded: each is retried (its intent stands for a restart)
            for i in placed:
                outcomes[i] = exc
        return outcomes

    def remove_temporary(self, rel: str) -> None:
        """Remove a temporary file p2p made (an abandoned transfer's)."""
        _remove_quietly(self.root / rel)

    def set_metadata(self, path: str, event) -> Entry:
        """Give the file at ``path`` (already holding ``event``'s content) the
        event's permissions and mtime, in place: no content is written."""
        self._check_unchanged(path)
        dest = self.root / path
        if event.mode & PERMISSIONS:
            os.chmod(dest, event.mode & PERMISSIONS)   # a regular file: _check_unchanged saw it
        os.utime(dest, ns=(event.mtime, event.mtime), follow_symlinks=False)
        entry = Entry.from_stat(os.lstat(dest), event.hash, event.id)
        self.state.set(path, entry)
        return entry

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


class PendingFile:
    """A version being written: blocks land at their offsets in a temporary file;
    ``commit`` checks the whole file against the event's hash, fsyncs it and
    renames it into place (after the local-edit check), ``abort`` removes it.
    Every block was verified against its hash on arrival."""

    def __init__(self, writer: FolderWriter, path: str, event, tmp: Path, fd: int, resumed: bool = False):
        self.writer, self.path, self.event, self.tmp, self.fd = writer, path, event, tmp, fd
        self.resumed = resumed     # an interrupted transfer's file: some blocks may be there already
        self.to_store: list = []   # (hash, bytes) of verified blocks to keep in the store with the file's commit
        self._entry: Optional[Entry] = None
        self.expected = LOOK_UP    # the path's record when this version was last found wanted (None: no record)
        # no fd: a small file whose bytes stay here until finish() creates its temporary file
        self._memory = bytearray(event.size) if fd < 0 else None
        self._hash = RunningHash(event.size, self._read)
        self._large = event.size > limits.ARCHIVE_LATER_MIN   # its blocks land in bulk threads, not the hub
        if fd >= 0:
            os.ftruncate(fd, event.size)

    def _read(self, offset: int, count: int) -> bytes:
        if self._memory is not None:
            return bytes(self._memory[offset:offset + count])
        return os.pread(self.fd, count, offset)

    def layout(self) -> dict:
        """block hash -> the offsets where it goes (a block may repeat)."""
        offsets, at = {}, 0
        for block_hash, size in self.event.blocks:
            offsets.setdefault(block_hash, []).append(at)
            at += size
        return offsets

    def write_block(self, offsets, data) -> None:
        """Write a verified block's bytes at each of its offsets."""
        for start in offsets:
            view, offset = memoryview(data), start
            if self._memory is not None:   # (a block past the end raises: the sizes differ)
                memoryview(self._memory)[start:start + len(view)] = view
                view = view[len(view):]
            while view:
                written = os.pwrite(self.fd, view, offset)
                view, offset = view[written:], offset + written
            self._landed(start, len(data), data)

    def _landed(self, offset: int, size: int, data=None) -> None:
        """A verified block is at ``offset``. A large file's is hashed into the
        whole now (RunningHash) and starts going to disk; a smaller file is
        hashed whole before its rename (``RunningHash.finish`` reads it), so
        the blocks it writes in the hub cost the hub no second hash."""
        if self._large:
            self._hash.written(offset, size, data)
            start_writeback(self.fd, offset, size)

    def blocks_present(self, blocks: dict, sizes: dict) -> set:
        """Of ``blocks`` (hash -> offsets), those already written at every
        offset (an interrupted transfer's file), each verified against its hash."""
        present = set()
        for block_hash, offsets in blocks.items():
            if all(hashlib.sha256(os.pread(self.fd, sizes[block_hash], at)).hexdigest() == block_hash
                   for at in offsets):
                present.add(block_hash)
                for at in offsets:
                    self._landed(at, sizes[block_hash])
        return present

    def write_stored_block(self, block_hash: str, offsets, *, verify: bool = True) -> None:
        """Copy a block from the store to its offsets (verified first unless the
        caller has just checked and stored it)."""
        if self._memory is not None:
            self.write_block(offsets, self.writer.store.get(block_hash))   # (verified as read)
            return
        size = self.writer.store.copy_into(block_hash, self.fd, offsets, verify=verify)
        for offset in offsets:
            self._landed(offset, size)

    def copy_from_store(self, layout: dict) -> None:
        for block_hash, offsets in layout.items():
            self.write_stored_block(block_hash, offsets)

    def commit(self) -> Entry:
        """fsync, then rename into place."""
        self.finish(durable=True)
        return self.place()

    def finish(self, durable: bool) -> None:
        """Check the whole content against the event's hash (``ContentMismatch``),
        set mode and mtime and close; fsync if ``durable`` (the caller
        wants the file durable before it is placed)."""
        event = self.event
        try:
            self._check_content()
            if self._memory is not None:   # a small file: its temporary file now, written at once
                self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                memory, self._memory = self._memory, None
                view, offset = memoryview(memory), 0
                while view:
                    written = os.pwrite(self.fd, view, offset)
                    view, offset = view[written:], offset + written
            os.fchmod(self.fd, event.mode & PERMISSIONS or 0o644)
            os.utime(self.fd, ns=(event.mtime, event.mtime))   # before the fsync: durable with the content
            if durable:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
        except BaseException:
            self.abort()
            raise

    def _check_content(self) -> None:
        """The sha256 of the whole temporary file, hashed as its blocks landed
        (RunningHash: what was not hashed yet is read now): each block was
        checked on arrival, this checks that they make up the version."""
        digest, hashed = self._hash.finish()
        if hashed != self.event.size or digest != self.event.hash:
            raise ContentMismatch(f"{self.path}: the content written hashes to {digest[:12]} "
                                  f"({hashed} bytes), not to its event's {self.event.hash[:12]}")

    def intend(self) -> Entry:
        """Journal that the path is about to hold this file (LocalState.intend):
        a crash before or after the rename is then told apart at restart."""
        if self._entry is None:
            self.writer.state.intend(self.path, self.prepare_entry())
        return self._entry

    def prepare_entry(self) -> Entry:
        """The entry the path will have once the finished file is renamed in (not recorded)."""
        self._entry = Entry.from_stat(os.lstat(self.tmp), self.event.hash, self.event.id)  # rename keeps it
        return self._entry

    def place(self) -> Entry:
        """Rename the finished, durable file into place, unless the user changed
        the path meanwhile (LocalChanged)."""
        dest = self.writer.root / self.path
        try:
            self.writer._check_unchanged(self.path, expected=self.expected)
            if self._entry is None:
                self.intend()
                self.writer.state.sync()
            os.replace(self.tmp, dest)
        except BaseException:
            self.abort()
            raise
        self.writer.state.set(self.path, self._entry)
        return self._entry

    def abort(self) -> None:
        self.keep()
        _remove_quietly(self.tmp)

    def keep(self) -> None:
        """Stop writing, but leave the temporary file for a later attempt to resume."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_SYNC_FILE_RANGE_WRITE = 2    # <linux/fs.h>: start writeback of the range's dirty pages, do not wait


@functools.lru_cache(maxsize=None)
def _sync_file_range():
    """libc's sync_file_range, or None where there is none (not Linux)."""
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return call


def start_writeback(fd: int, offset: int, size: int) -> None:
    """Start writing ``size`` bytes of ``fd`` at ``offset`` to disk, without
    waiting (Linux sync_file_range): the fsync before a large file's rename
    then waits for the last blocks only, not for the whole file. Durability
    still comes from that fsync; where the call is missing, nothing happens."""
    call = _sync_file_range()
    if call is not None:
        call(fd, offset, size, _SYNC_FILE_RANGE_WRITE)


def _remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
