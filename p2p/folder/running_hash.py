"""The sha256 of a file whose blocks are written in any order, by several threads.

A received file is checked against its event's hash before it is renamed
into place. Reading the whole file back for that check costs a second pass
over it after the last block; instead, ``RunningHash`` hashes the file's
bytes as they land: a block is hashed as soon as every byte before it is,
from memory when it is the block just written (blocks mostly arrive in
order), else read back from the file. Blocks that end beyond the file's size
or that were written again are left to ``finish``, which reads whatever is
not hashed yet from the file, so the digest always covers exactly the bytes
``[0, size)`` as written. Blocking code, thread-safe: one thread hashes at a
time and takes over the blocks others write meanwhile; a thread whose block
comes right after the one being hashed waits for it (one block's hash) and
hashes its own from memory, instead of leaving it to be read back (several
threads land a large file's blocks: most of them arrived while another was
being hashed, and were read back).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Callable, Dict, Tuple

from p2p import limits


class RunningHash:
    def __init__(self, size: int, read: Callable[[int, int], bytes]):
        """``size``: the file's size; ``read(offset, count)``: bytes of the file."""
        self.size = size
        self._read = read
        self._whole = hashlib.sha256()
        self._done = 0                         # bytes [0, _done) are hashed
        self._written: Dict[int, int] = {}     # offset -> size of blocks written beyond the hashed prefix
        self._lock = threading.Condition()
        self._busy = False                     # a thread is hashing ...
        self._hashing_to = 0                   # ... the bytes up to here

    def written(self, offset: int, size: int, data=None) -> None:
        """``[offset, offset + size)`` now holds its verified bytes: ``data``
        when the caller has them in memory (None: read back when needed)."""
        with self._lock:
            if offset < self._done or offset + size > self.size or offset in self._written:
                return   # already hashed (written again), or beyond the end: left to finish()
            while self._busy and data is not None and offset == self._hashing_to:
                self._lock.wait()   # the block before is being hashed: ours is next, from memory
            self._written[offset] = size
            if self._busy:
                return   # the thread hashing now takes it (reading it back)
            self._busy = True
        try:
            while True:
                with self._lock:
                    at = self._done
                    count = self._written.pop(at, None)
                    if count is None:
                        self._idle()
                        return
                    self._hashing_to = at + count
                self._whole.update(data if at == offset and data is not None else self._read(at, count))
                with self._lock:
                    self._done = at + count
        except BaseException:
            with self._lock:
                self._idle()
            raise

    def _idle(self) -> None:
        """No thread hashes now (the caller holds the lock): a waiting one may."""
        self._busy = False
        self._lock.notify_all()

    def finish(self) -> Tuple[str, int]:
        """Once every write is done: hash what is not hashed yet (read from the
        file) and return (sha256 hex, bytes hashed: less than ``size`` if the
        file is shorter)."""
        while self._done < self.size:
            chunk = self._read(self._done, min(limits.VERIFY_CHUNK, self.size - self._done))
            if not chunk:
                break
            self._whole.update(chunk)
            self._done += len(chunk)
        return self._whole.hexdigest(), self._done
