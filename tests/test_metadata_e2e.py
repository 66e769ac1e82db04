"""Metadata crosses the network as metadata (real processes on loopback).

Only the 0777 permission bits are synced (never setuid, setgid or sticky); a
chmod-only or mtime-only change is an update with the same content, applied
in place on the other side (same inode: no content moved); a file the user
named ``.p2p-tmp-...`` is the user's, synced and never removed at start.
"""

import json
import os
import stat

from peers import wait_until


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def events(peer) -> list:
    return [json.loads(line) for line in (peer.home / "events.jsonl").read_bytes().splitlines()]


def test_setuid_setgid_and_sticky_never_cross(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("tool", b"#!/bin/sh\necho hi\n")
    os.chmod(a.path("tool"), 0o6755 | stat.S_ISVTX)
    wait_until(lambda: b.has("tool", b"#!/bin/sh\necho hi\n") and mode(b.path("tool")) == 0o755, 30, "tool on b")
    assert {e["mode"] for e in events(a) if e["path"] == "tool"} <= {0o755, 0o644}


def test_a_chmod_only_change_is_applied_in_place(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("notes.txt", b"secret notes\n")
    os.chmod(a.path("notes.txt"), 0o644)
    wait_until(lambda: b.has("notes.txt", b"secret notes\n") and mode(b.path("notes.txt")) == 0o644, 30, "notes")
    inode = os.lstat(b.path("notes.txt")).st_ino
    os.chmod(a.path("notes.txt"), 0o600)
    wait_until(lambda: mode(b.path("notes.txt")) == 0o600, 30, "the chmod on b")
    assert os.lstat(b.path("notes.txt")).st_ino == inode, "the file was rewritten, not chmodded"
    last = [e for e in events(b) if e["path"] == "notes.txt"][-1]
    assert last["type"] == "update" and last["mode"] == 0o600
    assert "< metadata notes.txt" in b.output()


def test_an_mtime_only_change_is_applied_in_place(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    a.write("photo.jpg", b"\xff\xd8 jpeg bytes")
    wait_until(lambda: b.has("photo.jpg", b"\xff\xd8 jpeg bytes"), 30, "photo on b")
    inode = os.lstat(b.path("photo.jpg")).st_ino
    stamp = 1_600_000_000_123_456_789
    os.utime(a.path("photo.jpg"), ns=(stamp, stamp))
    wait_until(lambda: os.lstat(b.path("photo.jpg")).st_mtime_ns == stamp, 30, "the new mtime on b")
    assert os.lstat(b.path("photo.jpg")).st_ino == inode


def test_user_files_named_like_temporaries_are_kept_and_synced(make_peer):
    a = make_peer("a")
    a.write(".p2p-tmp-notes.txt", b"mine, not p2p's")
    a.write("dir/.p2p-tmp-0123456789abcdef", b"a leftover p2p temporary")
    a.start()
    b = make_peer("b", peers=[a]).start()
    wait_until(lambda: b.has(".p2p-tmp-notes.txt", b"mine, not p2p's"), 30, "the user's file on b")
    assert a.has(".p2p-tmp-notes.txt", b"mine, not p2p's")
    assert a.lacks("dir/.p2p-tmp-0123456789abcdef"), "a dead temporary of p2p's survived the start-up scan"
