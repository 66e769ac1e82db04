"""The start-up scan watches the folder as it lists it (``FolderWatcher(...,
walk=False)`` + ``Scanner.changed(watch=...)``), instead of watchdog walking
the whole tree once more before the scan: every directory a full walk would
watch is watched (ignored ones, names no event can carry, p2p's own, what is
under them; never what a link leads to), each before it is listed, so a
change made after the scan listed a directory is reported; and a listing
that stops early still leaves no directory unwatched."""

import os
from pathlib import Path

import gevent
import pytest

from p2p.blocks.store import BlockStore
from p2p.folder.scan import Scanner
from p2p.folder.state import LocalState
from p2p.watch.watcher import Coalescer, FolderWatcher


def make_tree(root: Path) -> None:
    for d in ["a/b/c", "a/d", "ignored/x/y", "bad\\name/z", ".p2p/blocks/00", "e"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ["a/b/c/f", "a/d/g", "ignored/x/y/h", "bad\\name/z/i", "e/j", "top"]:
        (root / f).write_bytes(b"x")
    os.symlink(root / "a", root / "link-to-a")
    os.mkfifo(root / "e" / "fifo")


def watched_paths(watcher: FolderWatcher) -> set:
    (emitter,) = watcher.observer.emitters
    return set(emitter._inotify._active_callbacks_by_path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    make_tree(root)
    state = LocalState(tmp_path / "local.db")
    scanner = Scanner(root, state, BlockStore(tmp_path / "blocks"), ignored=lambda path: path == "ignored")
    watchers, greenlets = [], []

    def watcher(walk: bool, paths=None) -> FolderWatcher:
        """A started watcher; the paths it reports (coalesced) go to ``paths``."""
        coalescer = Coalescer(lambda found, shallow: paths.extend(found) if paths is not None else None)
        greenlets.append(gevent.spawn(coalescer.run))
        w = FolderWatcher(root, coalescer, walk=walk)
        w.start()
        watchers.append(w)
        return w

    yield root, scanner, watcher
    for w in watchers:
        w.stop()
    gevent.killall(greenlets)
    state.close()


def test_the_start_up_scan_watches_every_directory_a_full_walk_watches(folder):
    root, scanner, watcher = folder
    full = watched_paths(watcher(walk=True))
    at_scan = watcher(walk=False)
    assert watched_paths(at_scan) == {os.fsencode(root)}   # only the top, until the scan lists the rest
    list(scanner.changed(watch=at_scan.watch))
    assert watched_paths(at_scan) == full
    assert os.fsencode(root / "ignored" / "x" / "y") in full and os.fsencode(root / "link-to-a") not in full


def test_a_change_after_the_scan_listed_its_directory_is_reported(folder):
    root, scanner, watcher = folder
    paths = []
    w = watcher(walk=False, paths=paths)
    list(scanner.changed(watch=w.watch))
    (root / "a" / "b" / "c" / "new").write_bytes(b"after the listing")
    (root / "ignored" / "x" / "y" / "new").write_bytes(b"not entered, still watched")
    with gevent.Timeout(10, AssertionError(f"no event for both new files: {paths}")):
        while not {"a/b/c/new", "ignored/x/y/new"} <= set(paths):
            gevent.sleep(0.02)


def test_a_listing_that_stops_early_leaves_no_directory_unwatched(folder, monkeypatch):
    root, scanner, watcher = folder
    full = watched_paths(watcher(walk=True))
    at_scan = watcher(walk=False)
    children = scanner.state.children

    def failing(directory):
        if directory == "a/b":
            raise OSError("the local state cannot be read")
        return children(directory)
    monkeypatch.setattr(scanner.state, "children", failing)
    with pytest.raises(OSError):
        list(scanner.changed(watch=at_scan.watch))
    assert watched_paths(at_scan) == full


def test_p2ps_own_files_are_not_handed_on_and_the_users_are(folder):
    """A received file is written to a temporary name, then renamed: only its
    final name is a change (the temporary one's events would each cost a
    scan that finds nothing), as nothing under ``.p2p/`` is; a user's file
    that merely looks like one is a change."""
    root, _, watcher = folder
    paths = []
    watcher(walk=True, paths=paths)
    temp = root / "a" / ".p2p-tmp-0123456789abcdef"
    temp.write_bytes(b"received")
    os.chmod(temp, 0o644)
    os.replace(temp, root / "a" / "received.txt")
    (root / ".p2p" / "blocks" / "00" / "pack").write_bytes(b"p2p's own")
    (root / "a" / ".p2p-tmp-notes").write_bytes(b"the user's")
    with gevent.Timeout(10, AssertionError(f"no event for the user's files: {paths}")):
        while not {"a/received.txt", "a/.p2p-tmp-notes"} <= set(paths):
            gevent.sleep(0.02)
    gevent.sleep(0.2)
    assert set(paths) == {"a/received.txt", "a/.p2p-tmp-notes"}


def test_a_directory_whose_attributes_alone_changed_is_reported_shallow(folder):
    """``tar xf`` sets each directory's time once it has filled it: a report
    of that alone says the directory's content did not change (its scan
    need not list it again); a created directory, or one also created or
    written in within the same moment, is not shallow."""
    root, _, watcher = folder
    flushed = []
    coalescer = Coalescer(lambda paths, shallow: flushed.append((set(paths), set(shallow))))
    greenlet = gevent.spawn(coalescer.run)
    w = FolderWatcher(root, coalescer, walk=True)
    w.start()
    try:
        os.utime(root / "a" / "d", ns=(1, 1))
        (root / "new").mkdir()
        os.chmod(root / "new", 0o700)
        with gevent.Timeout(10, AssertionError(f"not both reported: {flushed}")):
            while not {"a/d", "new"} <= set().union(*(paths for paths, _ in flushed)):
                gevent.sleep(0.02)
        gevent.sleep(0.2)
        shallow = set().union(*(flat for _, flat in flushed))
        assert "a/d" in shallow and "new" not in shallow
    finally:
        w.stop()
        greenlet.kill()
