"""A missing, moved or emptied folder is never turned into deletes (real processes).

The folder carries a marker (.p2p-folder). A home whose history holds events
refuses to start on a folder without it, with one line saying what to run; a
running peer whose folder vanishes pauses instead of deleting everything
everywhere; `p2p restore --at WHEN` (no PATH, no --to) undoes a mass delete.
"""

import json
import os
import shutil
import time
from datetime import datetime

from p2p.folder.marker import MARKER
from peers import free_port, p2p, wait_until


def deletes(peer) -> list:
    lines = (peer.home / "events.jsonl").read_bytes().splitlines()
    return [e["path"] for e in map(json.loads, lines) if e["type"] == "delete"]


def synced_pair(make_peer, files):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    for name, data in files.items():
        a.write(name, data)
    wait_until(lambda: all(b.has(n, d) for n, d in files.items()), 30, "the files on b")
    return a, b


FILES = {f"dir{i % 3}/file{i}.txt": f"content {i}\n".encode() for i in range(12)}


def test_moving_the_folder_away_pauses_instead_of_deleting(make_peer):
    a, b = synced_pair(make_peer, FILES)
    moved = a.home / "moved-away"
    os.rename(a.root, moved)
    wait_until(lambda: a.status().get("paused"), 30, "a to pause")
    assert not a.status()["folder_state"]["in_sync"]
    assert deletes(a) == [] and all(b.has(n, d) for n, d in FILES.items())
    os.rename(moved, a.root)                                   # it comes back
    wait_until(lambda: "is back: resuming" in a.output(), 30, "a to resume")
    a.write("after.txt", b"after the move\n")
    wait_until(lambda: b.has("after.txt", b"after the move\n"), 30, "a new file on b")
    assert deletes(a) == [] and deletes(b) == []
    assert all(b.has(n, d) for n, d in FILES.items())


def test_an_existing_home_on_a_new_empty_folder_does_not_start(make_peer):
    a, b = synced_pair(make_peer, FILES)
    a.stop()
    empty = a.home / "new-empty"
    empty.mkdir()
    out = p2p("run", "--home", str(a.home), "--root", str(empty), "--listen", f"127.0.0.1:{free_port()}",
              "--discovery", "off")
    assert out.returncode == 2, out
    [line] = out.stderr.strip().splitlines()
    assert MARKER in line and "p2p restore" in line and "--root" in line
    assert not (empty / MARKER).exists() and os.listdir(empty) == []
    assert deletes(a) == [] and all(b.has(n, d) for n, d in FILES.items())


def test_a_mistyped_root_is_an_error_not_a_new_tree(make_peer):
    a, _ = synced_pair(make_peer, {"x.txt": b"x"})
    a.stop()
    typo = a.home / "no" / "such" / "folder"
    out = p2p("run", "--home", str(a.home), "--root", str(typo), "--listen", f"127.0.0.1:{free_port()}",
              "--discovery", "off")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert not (a.home / "no").exists()


def test_a_deleted_folder_comes_back_with_restore_at_now(make_peer):
    a, b = synced_pair(make_peer, FILES)
    a.stop()
    shutil.rmtree(a.root)
    out = p2p("run", "--home", str(a.home), "--listen", f"127.0.0.1:{free_port()}", "--discovery", "off")
    assert out.returncode == 2 and "is missing" in out.stderr
    restored = p2p("restore", "--home", str(a.home), "--at", "now")
    assert restored.returncode == 0, restored.stderr
    assert all(a.has(n, d) for n, d in FILES.items()) and (a.root / MARKER).is_file()
    a.start()
    a.write("later.txt", b"later\n")
    wait_until(lambda: b.has("later.txt", b"later\n"), 30, "a change after the restore")
    assert deletes(a) == [] and deletes(b) == []


def test_restore_the_whole_folder_in_place_undoes_a_mass_delete(make_peer):
    a, b = synced_pair(make_peer, FILES)
    before = datetime.now().isoformat(timespec="microseconds")
    time.sleep(0.01)   # event times are taken after this moment (a clock tick, not a wait for a condition)
    for name in FILES:
        os.remove(a.path(name))
    wait_until(lambda: all(b.lacks(n) for n in FILES), 30, "the deletes on b")
    out = p2p("restore", "--home", str(a.home), "--at", before)
    assert out.returncode == 0, out.stderr
    assert "the folder" in out.stdout
    wait_until(lambda: all(b.has(n, d) for n, d in FILES.items()), 30, "the files back on b")
    assert all(a.has(n, d) for n, d in FILES.items())
