"""What a scan finds changed since the local state (a restart over a folder
edited while the peer was down): every change of content, size, mtime,
permissions, inode or kind is found, even one that keeps size and mtime;
deleted paths, and files replaced by a symbolic link or a FIFO, read as
deleted; an untouched file or directory is not a change. ``Entry.same_stat``
(a few integer comparisons per path) agrees with its definition for any stat,
and the start-up listing (``Scanner.changed``) leaves out only unchanged paths."""

import os
import shutil
import stat as statmod
import tempfile
from pathlib import Path
from types import SimpleNamespace

from hypothesis import example, given, settings, strategies as st

from p2p.blocks.store import BlockStore
from p2p.folder.scan import Scanner
from p2p.folder.state import PERMISSIONS, Entry, LocalState

MTIME = 1_700_000_000_123_456_789
EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "150"))


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


NAMES = ["a", "b", "a-b"]   # (a name with a "-" sorts between "a" and "a/...")
TREE = st.recursive(st.sampled_from([b"x", b"yy"]), lambda kids: st.dictionaries(st.sampled_from(NAMES), kids,
                                                                                   max_size=3), max_leaves=8)
EDITS = st.lists(st.tuples(st.sampled_from(["write", "chmod", "remove", "mkdir", "link", "fifo", "replace"]),
                           st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)), max_size=6)


def build(root, tree) -> None:
    for name, sub in tree.items():
        if isinstance(sub, dict):
            (root / name).mkdir()
            build(root / name, sub)
        else:
            (root / name).write_bytes(sub)


def edit(root, kind, parts) -> None:
    target = root.joinpath(*parts)
    try:
        if statmod.S_ISFIFO(os.lstat(target).st_mode) and kind in ("write", "replace"):
            return                                 # (opening a FIFO made by an earlier edit would block)
    except OSError:
        pass
    try:
        if kind == "write":
            target.write_bytes(b"edited")
        elif kind == "chmod":
            os.chmod(target, 0o600)
        elif kind == "remove":
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        elif kind == "mkdir":
            target.mkdir()
        elif kind == "link":
            os.symlink(root, target)
        elif kind == "fifo":
            os.mkfifo(target)
        else:                                      # same size and mtime, another inode
            st_ = os.lstat(target)
            (target.parent / "new").write_bytes(target.read_bytes())
            os.utime(target.parent / "new", ns=(st_.st_mtime_ns, st_.st_mtime_ns))
            os.replace(target.parent / "new", target)
    except (OSError, ValueError):
        pass                                       # (no such path, a parent that is a file, ...)


def found_changes(scanner, paths) -> dict:
    out = {}
    for path in sorted(set(paths)):
        try:
            change = scanner.observe(path, scanner.state.get(path), held=[])
        except Exception as exc:                   # NotSynced, Renamed: as the local loop reports them
            out[path] = type(exc).__name__
            continue
        if change is not None:
            out[path] = (change.kind, change.deleted, change.hash, change.mode)
    return out


NESTED = {"a": {"a": b"x", "b": {"a": b"yy"}}, "a-b": b"x", "b": b"yy"}


@settings(max_examples=EXAMPLES, deadline=None)
@given(tree=TREE.filter(lambda t: isinstance(t, dict)), edits=EDITS)
@example(tree=NESTED, edits=[("remove", ["a"]), ("write", ["a"])])          # a directory replaced by a file
@example(tree=NESTED, edits=[("remove", ["a"]), ("link", ["a"])])           # ... by a link to a directory
@example(tree=NESTED, edits=[("remove", ["a", "b"]), ("fifo", ["a", "b"])])  # ... by a FIFO
@example(tree=NESTED, edits=[("remove", ["a"])])                            # removed, with what it held
@example(tree=NESTED, edits=[("remove", ["b"]), ("mkdir", ["b"]), ("write", ["b", "a"])])   # a file by a directory
@example(tree=NESTED, edits=[("replace", ["a", "a"]), ("chmod", ["a-b"]), ("write", ["a", "b", "a"])])
def test_the_start_up_listing_leads_to_the_same_changes_as_looking_at_every_path(tree, edits):
    """``Scanner.changed()`` leaves out only paths ``observe`` finds unchanged:
    whatever was edited while the peer was down, the changes found over its
    paths are those found over every path on disk and in the local state."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shared"
        root.mkdir()
        build(root, tree)
        state = LocalState(Path(tmp) / "local.db")
        scanner = Scanner(root, state, BlockStore(Path(tmp) / "blocks"))
        for path in scanner.walk():
            try:
                change = scanner.observe(path)
            except Exception:
                continue
            if change is not None:
                state.set(path, change.entry("A:1"))
        for kind, parts in edits:
            edit(root, kind, parts)
        everything = found_changes(scanner, list(scanner.walk()) + state.under(""))
        assert found_changes(scanner, scanner.changed()) == everything
        state.close()


def listed_by_os_walk(root) -> list:
    """What ``Scanner.walk()`` must list, as ``os.walk`` gives it: every path,
    parents first, names sorted; a link to a directory neither listed nor
    entered (a link to anything else is listed, as a file is)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        dirnames.sort()
        dirnames[:] = [name for name in dirnames if not os.path.islink(os.path.join(dirpath, name))]
        out += [prefix + name for name in dirnames] + [prefix + name for name in sorted(filenames)]
    return out


@settings(max_examples=EXAMPLES, deadline=None)
@given(tree=TREE.filter(lambda t: isinstance(t, dict)), edits=EDITS)
@example(tree=NESTED, edits=[("remove", ["a"]), ("link", ["a"])])           # a link to a directory
@example(tree=NESTED, edits=[("fifo", ["a", "c"]), ("link", ["a", "a-b"])])
def test_the_listing_finds_what_os_walk_finds(tree, edits):
    """The scanner's own listing (one ``os.scandir`` per directory, its entries'
    types) lists what ``os.walk`` lists: each directory once, and its files,
    links and FIFOs, but neither a link to a directory nor what it leads to."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shared"
        root.mkdir()
        build(root, tree)
        for kind, parts in edits:
            edit(root, kind, parts)
        scanner = Scanner(root, LocalState(Path(tmp) / "local.db"), BlockStore(Path(tmp) / "blocks"))
        walked = []
        for path in scanner.walk():
            walked.append(path)
        assert walked == listed_by_os_walk(root)
        scanner.state.close()
