"""The durable high-water mark of this peer's own sequence numbers: ``.p2p/seq.mark``.

An event id ``ORIGIN:SEQ`` must never name two different events. The log
records every seq this peer issued (a local event is fsynced before it
leaves), unless events.jsonl is deleted or replaced by an older copy; the
mark is the evidence that survives that. Before an event whose seq is beyond
the mark is written, the mark is raised by ``limits.SEQ_RESERVE`` and made
durable (one small fsync per range, not one per event); a clean close writes
the exact count. At open, ``lost(count)`` compares the log's count of our own
events with it:

* clean mark: the count must be exactly the mark;
* after a crash: the range ending at the mark was reserved when its first
  seq was issued, so the count must reach at least that seq.

A smaller count means the log lost events this id issued (peers may hold
them): the node takes a new device id rather than reuse a seq.

File format: one JSON line, ``{"device": ID, "reserved": N, "range": R,
"clean": BOOL}``, replaced atomically (temporary file, fsync, rename, fsync of
the directory). Blocking file I/O, called from the hub: a few hundred bytes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import ujson

from p2p import limits
from p2p.history.log import LogWriteFailed
from p2p.security.private import create_private

log = logging.getLogger("p2p.history")

MARK_NAME = "seq.mark"


class SeqMark:
    """What ``.p2p/seq.mark`` says about ``device_id``: the highest seq it may
    have issued (``reserved``), and whether that is exact (``clean``)."""

    def __init__(self, path: Path, device_id: str):
        self.path = Path(path)
        self.device_id = device_id
        self.reserved = 0
        self.range = limits.SEQ_RESERVE
        self.clean = True
        self.found = False        # the file exists and names this device id
        try:
            data = ujson.loads(self.path.read_bytes())
            if data["device"] == device_id:
                self.reserved, self.range, self.clean = int(data["reserved"]), int(data["range"]), bool(data["clean"])
                self.found = True
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s ignored (%s): the sequence mark restarts from events.jsonl", self.path, exc)

    def lost(self, count: int) -> Optional[str]:
        """Why a log holding ``count`` of our events lacks some we issued, or None."""
        if not self.found:
            return None
        issued = self.reserved if self.clean else self.reserved - self.range + 1
        if count >= issued:
            return None
        return (f"events.jsonl holds {count} events of this device id but it issued at least {issued} "
                f"({self.path.name}): the log was deleted or replaced by an older copy")

    def adopt(self, count: int) -> None:
        """Start from a log holding ``count`` of our events (after ``lost`` found nothing)."""
        if not self.found or count > self.reserved:
            self._write(count, clean=True)

    def reserve(self, seq: int) -> None:
        """Make sure the mark covers ``seq`` before an event with it is written.

        Raises ``LogWriteFailed`` (nothing changed: the event must not be
        written) if the disk refuses the mark."""
        if seq > self.reserved:
            self._write(seq + limits.SEQ_RESERVE - 1, clean=False)

    def close(self, count: int) -> None:
        """A clean stop: the mark becomes the exact count (a failure leaves the range, which stays safe)."""
        if self.clean and self.reserved == count:
            return
        try:
            self._write(count, clean=True)
        except LogWriteFailed as exc:
            log.warning("cannot write %s at stop: %s", self.path, exc)

    def _write(self, reserved: int, clean: bool) -> None:
        data = ujson.dumps({"device": self.device_id, "reserved": reserved, "range": limits.SEQ_RESERVE,
                            "clean": clean}).encode("utf-8") + b"\n"
        temp = self.path.with_name(f".{MARK_NAME}.tmp")
        try:
            with os.fdopen(create_private(temp, os.O_WRONLY | os.O_TRUNC), "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise LogWriteFailed(exc.errno, f"cannot write {self.path}: {exc.strerror}") from exc
        self.reserved, self.range, self.clean, self.found = reserved, limits.SEQ_RESERVE, clean, True
