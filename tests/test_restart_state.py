"""A restart reads neither the log nor a whole snapshot of the local state
(real `p2p run` processes on loopback): neither after a clean stop nor
after a kill -9 is an event of events.jsonl read again (the index database
takes each batch in its own transaction), and no path in sync is re-checked by the reconciler; the local
state (.p2p/local.db) is used as it is, and a deleted or
corrupt one is rebuilt by the start-up scan from the folder and events.jsonl,
with one warning and without a single new event."""

import re

from tests.peers import wait_until

FILES = 20


def this_run(peer) -> str:
    """The log of the peer's latest start."""
    return peer.log_path.read_bytes()[peer._log_start:].decode("utf-8", "replace")


def folder_state(peer) -> dict:
    return peer.status()["folder_state"]


def recorded(peer, files: int, events: int) -> bool:
    state = folder_state(peer)
    return state["files"] == files and state["events"] == events and not state["local_changes"]


def test_a_restart_replays_nothing_after_a_clean_stop_and_only_the_tail_after_a_kill(make_peer):
    a = make_peer("a")
    a.write("first.txt", b"before the start")
    a.start()
    for i in range(FILES):
        a.write(f"dir/f{i}.txt", f"file {i}".encode())
    wait_until(lambda: recorded(a, FILES + 1, FILES + 2), 30, "the files recorded")  # + dir/
    assert a.stop() == 0

    a.start()
    state = folder_state(a)
    assert state["replayed_at_start"] == 0 and state["events"] == FILES + 2 and state["files"] == FILES + 1
    assert "(22 events, 0 read from it at start)" in a.output()
    assert re.search(r"\b0 paths of the history differ from the local state at start", this_run(a))  # none re-checked

    for i in range(5):
        a.write(f"later/g{i}.txt", f"later {i}".encode())
    wait_until(lambda: recorded(a, FILES + 6, FILES + 8), 30, "the later files recorded")
    a.kill()
    a.start()
    state = folder_state(a)
    assert state["replayed_at_start"] == 0, "each batch was in the index database before the kill"
    assert state["events"] == FILES + 8 and state["files"] == FILES + 6   # the kill lost nothing


def test_a_deleted_or_corrupt_local_state_is_rebuilt_without_new_events(make_peer):
    a = make_peer("a")
    a.start()
    for i in range(FILES):
        a.write(f"f{i}.txt", f"file {i}".encode())
    wait_until(lambda: recorded(a, FILES, FILES), 30, "the files recorded")
    assert a.stop() == 0
    for name in ("local.db", "local.db-wal", "local.db-shm"):
        (a.home / ".p2p" / name).unlink(missing_ok=True)
    a.start()
    assert recorded(a, FILES, FILES), "rebuilt from the folder: the same files, no new event"
    assert a.output().count("local.db missing: the start-up scan rebuilds the local state") == 1
    assert a.stop() == 0

    (a.home / ".p2p" / "local.db").write_bytes(b"garbage, not a database" * 100)
    a.start()
    assert recorded(a, FILES, FILES)
    assert a.output().count("local.db unreadable") == 1
