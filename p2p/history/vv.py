"""Version vectors: for each origin, the highest seq such that every event
1..seq of that origin is known.

Pure: no I/O. Because each origin numbers its events without gaps and a peer
only accepts an origin's events in seq order, one integer per origin says
exactly which events a peer has; two vectors say what one side lacks.
"""

from __future__ import annotations

from typing import Dict, Iterator, Mapping, Optional, Tuple

from p2p.history.event import is_device_id

BEFORE, AFTER, EQUAL, CONCURRENT = "before", "after", "equal", "concurrent"


class VersionVector:
    """origin -> highest contiguous seq (absent means 0)."""

    __slots__ = ("_seqs",)

    def __init__(self, seqs: Optional[Mapping[str, int]] = None):
        self._seqs: Dict[str, int] = {}
        for origin, seq in (seqs or {}).items():
            if seq:
                self._seqs[origin] = seq

    def get(self, origin: str) -> int:
        return self._seqs.get(origin, 0)

    def covers(self, origin: str, seq: int) -> bool:
        """True if event ``origin:seq`` is known."""
        return seq <= self._seqs.get(origin, 0)

    def advance(self, origin: str, seq: int) -> None:
        """Record event ``origin:seq``, which must be the next one of its origin."""
        current = self._seqs.get(origin, 0)
        if seq != current + 1:
            raise ValueError(f"{origin}:{seq} is not the next event of its origin (have {current})")
        self._seqs[origin] = seq

    def merge(self, other: "VersionVector | Mapping[str, int]") -> "VersionVector":
        """The element-wise maximum (a new vector)."""
        merged = dict(self._seqs)
        for origin, seq in _items(other):
            if seq > merged.get(origin, 0):
                merged[origin] = seq
        return VersionVector(merged)

    def compare(self, other: "VersionVector | Mapping[str, int]") -> str:
        """BEFORE (self < other), AFTER, EQUAL or CONCURRENT."""
        other_seqs = dict(_items(other))
        less = greater = False
        for origin in set(self._seqs) | set(other_seqs):
            mine, theirs = self._seqs.get(origin, 0), other_seqs.get(origin, 0)
            less |= mine < theirs
            greater |= mine > theirs
        if less and greater:
            return CONCURRENT
        return BEFORE if less else AFTER if greater else EQUAL

    def dominates(self, other: "VersionVector | Mapping[str, int]") -> bool:
        """True if self knows every event other knows."""
        return self.compare(other) in (AFTER, EQUAL)

    def to_dict(self) -> Dict[str, int]:
        return dict(self._seqs)

    @classmethod
    def from_dict(cls, data) -> "VersionVector":
        """From a peer's JSON object; raises ValueError on a malformed vector."""
        if not isinstance(data, dict):
            raise ValueError("a version vector is a JSON object")
        for origin, seq in data.items():
            if not is_device_id(origin):
                raise ValueError(f"version vector key {origin!r} is not a device id")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise ValueError(f"version vector seq {seq!r} for {origin} is not an integer >= 0")
        return cls(data)

    def items(self) -> Iterator[Tuple[str, int]]:
        return iter(self._seqs.items())

    def __eq__(self, other) -> bool:
        if isinstance(other, VersionVector):
            return self._seqs == other._seqs
        return NotImplemented

    def __repr__(self) -> str:
        return f"VersionVector({self._seqs!r})"


def _items(vector) -> Iterator[Tuple[str, int]]:
    return vector.items() if isinstance(vector, VersionVector) else iter(dict(vector).items())
