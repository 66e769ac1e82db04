"""What a scan finds changed since the local state (a restart over a folder
edited while the peer was down): every change of content, size, mtime,
permissions, inode or kind is found, even one that keeps size and mtime;
deleted paths, and files replaced by a symbolic link or a FIFO, read as
deleted; an untouched file or directory is not a change. ``Entry.same_stat``
(a few integer comparisons per path) agrees with its definition for any stat."""

import os
import stat as statmod
from types import SimpleNamespace

from hypothesis import given, strategies as st

from p2p.blocks.store import BlockStore
from p2p.folder.scan import Scanner
from p2p.folder.state import PERMISSIONS, Entry, LocalState

MTIME = 1_700_000_000_123_456_789


def recorded_folder(tmp_path):
    """A folder whose every path is recorded as the scanner saw it."""
    root = tmp_path / "shared"
    for name in ["same", "content", "size", "chmod", "inode", "to-dir", "to-link", "to-fifo", "gone"]:
        (root / "d").mkdir(parents=True, exist_ok=True)
        (root / "d" / name).write_bytes(b"0123456789")
        os.utime(root / "d" / name, ns=(MTIME, MTIME))
    (root / "dir-to-file").mkdir()
    (root / "kept-dir").mkdir()
    state = LocalState(tmp_path / "local.db")
    scanner = Scanner(root, state, BlockStore(tmp_path / "blocks"))
    for path in scanner.walk():
        change = scanner.observe(path)
        state.set(path, change.entry("A:1"))
    return root, scanner


def test_every_change_made_while_the_peer_was_down_is_found_and_nothing_else(tmp_path):
    root, scanner = recorded_folder(tmp_path)
    d = root / "d"
    (d / "content").write_bytes(b"9876543210")                 # same size: the mtime tells
    (d / "size").write_bytes(b"longer than before")
    os.utime(d / "size", ns=(MTIME, MTIME))
    os.chmod(d / "chmod", 0o600)
    (d / "inode.new").write_bytes(b"9876543210")               # same size and mtime, another file
    os.utime(d / "inode.new", ns=(MTIME, MTIME))
    os.replace(d / "inode.new", d / "inode")
    os.unlink(d / "to-dir")
    (d / "to-dir").mkdir()
    os.unlink(d / "to-link")
    os.symlink("same", d / "to-link")
    os.unlink(d / "to-fifo")
    os.mkfifo(d / "to-fifo")
    os.unlink(d / "gone")
    os.rmdir(root / "dir-to-file")
    (root / "dir-to-file").write_bytes(b"now a file")

    changes = {path: scanner.observe(path, scanner.state.get(path), held=[]) for path in scanner.state.under("")}
    found = {path: (c.kind, c.deleted) for path, c in changes.items() if c is not None}
    assert found == {"d/content": ("file", False), "d/size": ("file", False), "d/chmod": ("file", False),
                     "d/inode": ("file", False), "d/to-dir": ("dir", False), "d/to-link": ("file", True),
                     "d/to-fifo": ("file", True), "d/gone": ("file", True), "dir-to-file": ("file", False)}
    assert changes["d/chmod"].mode == 0o600 and changes["d/size"].size == len(b"longer than before")


KINDS = [statmod.S_IFREG, statmod.S_IFDIR, statmod.S_IFLNK, statmod.S_IFIFO, statmod.S_IFSOCK]


@given(kind=st.sampled_from(["file", "dir"]), size=st.integers(0, 3), mtime=st.integers(0, 3),
       ino=st.integers(0, 3), mode=st.integers(0, 0o7777), file_type=st.sampled_from(KINDS),
       st_size=st.integers(0, 3), st_mtime=st.integers(0, 3), st_ino=st.integers(0, 3))
def test_same_stat_is_true_exactly_when_the_kind_and_for_a_file_size_mtime_inode_and_permissions_agree(
        kind, size, mtime, ino, mode, file_type, st_size, st_mtime, st_ino):
    entry = Entry(kind, size, mtime, ino, mode & PERMISSIONS, "h" * 64 if kind == "file" else "", "A:1")
    disk = SimpleNamespace(st_mode=file_type | mode, st_size=st_size, st_mtime_ns=st_mtime, st_ino=st_ino)
    if kind == "dir":
        expected = statmod.S_ISDIR(disk.st_mode)
    else:
        expected = (statmod.S_ISREG(disk.st_mode) and (st_size, st_mtime, st_ino) == (size, mtime, ino)
                    and statmod.S_IMODE(disk.st_mode) & PERMISSIONS == entry.mode)
    assert entry.same_stat(disk) == expected
