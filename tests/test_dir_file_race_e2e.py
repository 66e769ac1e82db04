"""A directory on one peer and a file on another, made at the same path while
they were apart: every peer ends with the directory (it may hold other files)
and the file's content kept beside it as a conflict copy."""

import os

import pytest

from p2p.sync.plan import REPLACE, folder_action
from peers import converged, wait_until

pytestmark = pytest.mark.slow


def test_folder_action_replaces_what_is_in_the_way():
    class Target:
        def __init__(self, kind):
            self.kind, self.is_delete, self.id, self.hash = kind, False, "X:1", "h"
    assert folder_action(Target("dir"), "file", "h", "Y:1") == REPLACE
    assert folder_action(Target("file"), "dir", "", "Y:1") == REPLACE


def test_directory_and_file_created_at_the_same_path_offline(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("seed.txt", b"both online")
    wait_until(lambda: b.has("seed.txt", b"both online"), 20, "first sync")
    assert b.stop() == 0
    a.write("notes/inside.txt", b"a made notes/ a directory")
    wait_until(lambda: "notes/inside.txt" in a.output(), 10, "a to record its change")
    b.write("notes", b"b made notes a file")
    b.start()

    def settled():
        if not converged(a, b) or not a.has("notes/inside.txt", b"a made notes/ a directory"):
            return False
        return [n for n in os.listdir(a.root) if n.startswith("notes.sync-conflict-")]
    copies = wait_until(settled, 60, "both peers to keep the directory and a copy of the file")
    assert len(copies) == 1 and copies[0].endswith(b.output().split("p2p device ")[1][:7])
    assert a.has(copies[0], b"b made notes a file")
