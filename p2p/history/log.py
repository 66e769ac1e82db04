"""The event log: ``events.jsonl``, one canonical event per line, append-only.

``EventLog`` is the only writer of the file (it holds an exclusive ``flock``
while open for writing, so a second writer fails fast with ``LogLocked``).
History is never rewritten in place: lines are only ever appended, each batch
in one ``write`` of whole lines.

fsync policy: group commit. ``append(events)`` writes without fsync and marks
the log dirty; ``sync()`` fsyncs (``fdatasync``) if dirty. The node calls
``sync()`` at most every ``limits.FSYNC_INTERVAL`` for remote events (a crash
can lose the last fraction of a second of them; peers still have them and
resend). LOCAL events are appended with ``durable=True``, fsynced before
``append`` returns and so before any peer can see them: otherwise a crash
could lose an event peers already hold and its ``origin:seq`` would be reused
for different content.

Write faults: an append that fails (``ENOSPC``, ``EDQUOT``, ``EIO``, a short
write) is cut back (``ftruncate``) to the size before it, so the log is
exactly as it was, and ``LogWriteFailed`` is raised: nothing of the batch is
in the log, and the caller may try again later. A failed ``fdatasync`` (or a
failed cut-back) raises ``LogBroken`` and the log refuses every later write
and sync: after a failed fsync the kernel may already have dropped the dirty
pages and marked them clean, so a retried fsync could report success for
data that never reached the disk (PostgreSQL's "fsyncgate"). The only safe
answer is to stop, and reread the log from the disk at the next start.

Crash recovery at open (writer only): bytes after the last newline (a torn
write), and a last complete line that does not parse, are moved aside to
``events.jsonl.torn-<unix time>`` and the file is truncated to the end of the
last good line. A corrupt line in the middle is skipped with a warning when
read. A read-only ``EventLog`` (for ``p2p log`` / ``p2p restore`` beside a
running node) repairs nothing: it ignores a partial last line.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple

from p2p.history.event import Event, InvalidEvent
from p2p.security.private import create_private

log = logging.getLogger("p2p.history")

READ_CHUNK = 1 << 20           # sequential reads: 1 MiB at a time
FIRST_READ = 4096              # random reads: most lines fit in one page


class LogLocked(RuntimeError):
    """Another process already writes this events.jsonl."""


class LogWriteFailed(OSError):
    """An append could not be written (disk full, quota, I/O error); the log is
    exactly as it was before it. Worth trying again once the disk has room."""


class LogBroken(OSError):
    """events.jsonl can no longer be trusted to reach the disk (a failed fsync,
    or a failed write that could not be cut back): stop, and reread it at the
    next start."""


class EventLog:
    """Append-only JSONL file of events with offset-based reads."""

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._dirty = False
        self._broken: Optional[LogBroken] = None
        if read_only:
            self._fd = os.open(self.path, os.O_RDONLY) if self.path.exists() else None
            self.size = self._complete_size()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = create_private(self.path, os.O_RDWR | os.O_APPEND)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(self._fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise LogLocked(f"{self.path} is in use by another p2p process") from None
                raise
            self.size = os.fstat(self._fd).st_size
            self._repair_tail()

    # -- writing -----------------------------------------------------------
    def append(self, events: Iterable[Event], *, durable: bool = False) -> List[int]:
        """Append whole lines in one write; return each event's byte offset.

        All or nothing: on failure the log is cut back to its size before the
        call and ``LogWriteFailed`` is raised (``LogBroken`` if it cannot be).
        """
        if self.read_only:
            raise PermissionError("read-only event log")
        self._check_usable()
        offsets, chunks = [], []
        position = self.size
        for event in events:
            line = (event.to_json() + "\n").encode("utf-8")
            offsets.append(position)
            chunks.append(line)
            position += len(line)
        if not chunks:
            return offsets
        data = memoryview(b"".join(chunks))
        try:
            while data:  # a regular file takes it all at once, unless the disk fills up meanwhile
                written = os.write(self._fd, data)
                if not written:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                data = data[written:]
        except OSError as exc:
            self._cut_back(exc)
            raise LogWriteFailed(exc.errno, f"cannot append to {self.path}: {exc.strerror}") from exc
        self.size = position
        self._dirty = True
        if durable:
            self.sync()
        return offsets

    def _cut_back(self, cause: OSError) -> None:
        """Truncate the part of a failed append that reached the file."""
        try:
            os.ftruncate(self._fd, self.size)
        except OSError as exc:
            self._broken = LogBroken(exc.errno, f"{self.path}: an append failed ({cause.strerror}) and cutting "
                                                f"it back failed too ({exc.strerror}): the log may end in a "
                                                f"partial line, repaired at the next start")
            raise self._broken from exc

    def sync(self) -> None:
        """fsync if anything was appended since the last sync. A failure is final (``LogBroken``)."""
        self._check_usable()
        if self._dirty:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._broken = LogBroken(exc.errno, f"fsync of {self.path} failed ({exc.strerror}): what was "
                                                    f"appended since the last sync may not be on the disk")
                raise self._broken from exc
            self._dirty = False

    @property
    def broken(self) -> Optional[LogBroken]:
        """The failure that made the log unusable for writing, or None."""
        return self._broken

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken

    def close(self) -> None:
        if self._fd is not None:
            try:
                if not self.read_only and self._broken is None:
                    self.sync()
            finally:
                os.close(self._fd)
                self._fd = None

    # -- reading -----------------------------------------------------------
    def read_at(self, offset: int) -> Event:
        """The event whose line starts at ``offset``."""
        return Event.from_json(self.line_at(offset))

    def line_at(self, offset: int) -> bytes:
        """The raw line (without newline) starting at ``offset``."""
        want = FIRST_READ
        while True:
            data = os.pread(self._fd, want, offset)
            end = data.find(b"\n")
            if end >= 0:
                return data[:end]
            if len(data) < want or offset + len(data) >= self.size:
                raise InvalidEvent(f"no complete line at offset {offset}")
            want *= 4

    def read_bytes(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset) if length > 0 else b""

    def last_line_start(self, end: int) -> int:
        """Offset where the line ending just before byte ``end`` starts (0 for an empty log)."""
        return self._last_newline_before(end - 1) + 1 if end > 0 else 0

    def iter_lines(self, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, bytes]]:
        """(offset, raw line) for every complete line in [start, end), in log order."""
        end = self.size if end is None else end
        if self._fd is None:
            return
        position, pending = start, b""
        while position < end:
            chunk = os.pread(self._fd, min(READ_CHUNK, end - position), position)
            if not chunk:
                break
            buffer = pending + chunk
            line_start = position - len(pending)
            cut = 0
            while True:
                newline = buffer.find(b"\n", cut)
                if newline < 0:
                    break
                yield line_start + cut, buffer[cut:newline]
                cut = newline + 1
            pending = buffer[cut:]
            position += len(chunk)

    def iter_from(self, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, Event]]:
        """(offset, event) in log order; corrupt lines are skipped with a warning."""
        for offset, line in self.iter_lines(start, end):
            event = self._parse(offset, line)
            if event is not None:
                yield offset, event

    def iter_reverse(self, end: Optional[int] = None) -> Iterator[Tuple[int, Event]]:
        """(offset, event) newest first, reading the file backwards in chunks."""
        position = self.size if end is None else end
        if self._fd is None:
            return
        tail = b""  # the start of the line that continues into the previously read chunk
        while position > 0:
            step = min(READ_CHUNK, position)
            position -= step
            buffer = os.pread(self._fd, step, position) + tail
            lines = buffer.split(b"\n")
            tail = lines[0]  # may continue in the previous chunk
            offset = position + len(buffer)  # end of the last piece
            for line in reversed(lines[1:]):
                offset -= len(line)
                if line:
                    event = self._parse(offset, line)
                    if event is not None:
                        yield offset, event
                offset -= 1
        if tail:
            event = self._parse(0, tail)
            if event is not None:
                yield 0, event

    @staticmethod
    def _parse(offset: int, line: bytes) -> Optional[Event]:
        try:
            return Event.from_json(line)
        except InvalidEvent as exc:
            log.warning("events.jsonl: skipping corrupt line at byte %d: %s", offset, exc)
            return None

    def refresh(self) -> None:
        """Read-only: take in the complete lines the writer appended since open."""
        if self.read_only:
            self.size = self._complete_size()

    # -- crash recovery ----------------------------------------------------
    def _complete_size(self) -> int:
        """Size up to and including the last newline (what a reader may trust)."""
        if self._fd is None:
            return 0
        size = os.fstat(self._fd).st_size
        return self._last_newline_before(size) + 1

    def _last_newline_before(self, end: int) -> int:
        """Offset of the last b'\\n' before ``end``, or -1."""
        position = end
        while position > 0:
            step = min(FIRST_READ * 16, position)
            position -= step
            found = os.pread(self._fd, step, position).rfind(b"\n")
            if found >= 0:
                return position + found
        return -1

    def _repair_tail(self) -> None:
        good = self._last_newline_before(self.size) + 1
        if good > 0:
            line_start = self._last_newline_before(good - 1) + 1
            try:
                Event.from_json(os.pread(self._fd, good - 1 - line_start, line_start))
            except InvalidEvent:
                good = line_start
        if good == self.size:
            return
        torn = os.pread(self._fd, self.size - good, good)
        aside = self._torn_name()
        with os.fdopen(create_private(aside, os.O_WRONLY | os.O_EXCL), "wb") as out:
            out.write(torn)
            out.flush()
            os.fsync(out.fileno())
        os.ftruncate(self._fd, good)
        os.fsync(self._fd)
        log.warning("events.jsonl: torn last line (%d bytes) moved aside to %s", len(torn), aside.name)
        self.size = good

    def _torn_name(self) -> Path:
        stamp = int(time.time())
        candidate = self.path.with_name(f"{self.path.name}.torn-{stamp}")
        suffix = 1
        while candidate.exists():
            candidate = self.path.with_name(f"{self.path.name}.torn-{stamp}-{suffix}")
            suffix += 1
        return candidate
