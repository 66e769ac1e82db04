"""The per-path heads index in compact form: path -> offsets of its head events.

Pure: no I/O. A path is keyed by the first 8 bytes of its BLAKE2b digest. The
bulk lives in two parallel sorted arrays (key, offset) — 16 bytes per path,
loaded from the snapshot without building Python objects — and the paths
changed since the last ``compact()`` (plus every path with several heads) live
in a small dict that shadows them. A key collision between two paths only puts
both paths' heads under one key: readers filter the events by path, so the
answer stays exact.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from typing import Dict, Iterator, Tuple, Union

Offsets = Tuple[int, ...]
COMPACT_AT = 65536      # changed paths kept in the dict before folding them into the arrays


def path_key(path: str) -> int:
    return int.from_bytes(hashlib.blake2b(path.encode("utf-8"), digest_size=8).digest(), "little")


class HeadIndex:
    def __init__(self, keys: array = None, offsets: array = None, several: Dict[int, Offsets] = None):
        self._keys = keys if keys is not None else array("Q")       # sorted
        self._offsets = offsets if offsets is not None else array("q")
        self._changed: Dict[int, Union[int, Offsets]] = dict(several or {})

    def get(self, key: int) -> Offsets:
        value = self._changed.get(key)
        if value is not None:
            return value if isinstance(value, tuple) else (value,)
        i = bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return (self._offsets[i],)
        return ()

    def set(self, key: int, offsets: Offsets) -> None:
        self._changed[key] = offsets[0] if len(offsets) == 1 else offsets
        if len(self._changed) >= max(COMPACT_AT, len(self._keys)):  # geometric: O(1) amortised per set
            self.compact()

    def keys(self) -> Iterator[int]:
        changed = self._changed
        yield from changed
        for key in self._keys:
            if key not in changed:
                yield key

    def compact(self) -> None:
        """Fold the single-head changes into the sorted arrays (keeps several-head paths in the dict)."""
        singles = sorted((key, value) for key, value in self._changed.items() if not isinstance(value, tuple))
        if not singles:
            return
        keys, offsets = array("Q"), array("q")
        old_keys, old_offsets, changed = self._keys, self._offsets, self._changed
        i, n = 0, len(old_keys)
        for key, offset in singles:
            while i < n and old_keys[i] < key:
                if old_keys[i] not in changed:
                    keys.append(old_keys[i])
                    offsets.append(old_offsets[i])
                i += 1
            if i < n and old_keys[i] == key:
                i += 1
            keys.append(key)
            offsets.append(offset)
        while i < n:
            if old_keys[i] not in changed:
                keys.append(old_keys[i])
                offsets.append(old_offsets[i])
            i += 1
        self._keys, self._offsets = keys, offsets
        self._changed = {key: value for key, value in changed.items() if isinstance(value, tuple)}

    def parts(self) -> Tuple[array, array, Dict[int, Offsets]]:
        """(sorted keys, their offsets, {key: several offsets}) after compacting: what a snapshot stores."""
        self.compact()
        return self._keys, self._offsets, dict(self._changed)
