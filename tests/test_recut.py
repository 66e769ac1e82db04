"""The fetcher's re-cut: a file that grew across a chunk-size tier has no old
block in common with its new version, so its blocks are found by cutting our
current copy as the new size would be (one local read, each block hashed as read)."""

import hashlib
import random
from types import SimpleNamespace

from p2p import limits
from p2p.blocks.chunking import chunk_sizes, cut
from p2p.folder.state import Entry
from p2p.net.fetcher import Fetcher


class Pending:
    def __init__(self):
        self.written = {}

    def write_block(self, offsets, data):
        for offset in offsets:
            self.written[offset] = bytes(data)


def test_a_file_grown_across_a_tier_takes_its_old_content_from_our_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "CHUNKS_PER_FILE", 128)   # tier 0 up to 2 MiB, so the test stays small
    old = random.Random(3).randbytes(3 * limits.MiB // 2)
    new = old + random.Random(4).randbytes(limits.MiB)
    assert chunk_sizes(len(old)) != chunk_sizes(len(new))
    (tmp_path / "f.bin").write_bytes(old)
    state = {"f.bin": Entry("file", len(old), 0, 0, 0o644, "", "")}
    fetcher = Fetcher(root=tmp_path, state=state, store=None, archive=None, writer=None, partials=None,
                      unsynced=None, bulkpool=None, registry=None)
    layout = {}
    for offset, size in cut(new):
        layout.setdefault(hashlib.sha256(new[offset:offset + size]).hexdigest(), []).append(offset)
    event = SimpleNamespace(size=len(new))
    assert fetcher._recut_worthwhile("f.bin", event)
    pending = Pending()
    left = fetcher._copy_from_recut("f.bin", event, pending, dict(layout))
    assert pending.written and all(new[o:o + len(d)] == d for o, d in pending.written.items())
    assert sum(len(d) for d in pending.written.values()) >= len(old) - 2 * chunk_sizes(len(new))[2]
    assert set(left) | {h for h, offs in layout.items() if offs[0] in pending.written} == set(layout)
    assert not fetcher._recut_worthwhile("f.bin", SimpleNamespace(size=len(old) + 1))   # same tier: the store has them
