"""A member that sends invalid events (issue 15, item 5): a real `p2p run` T
and rogue members played from the test (tests/rogue.py).

* What T believes a peer has (``peer_vv``) grows only from events T's history
  validated: an invalid event claiming T's own origin at seq 1000 does not
  make T withhold its next real events from that peer.
* Rejections are logged one line per session and kind per interval, with a
  count, not one line per event (T runs with REJECT_LOG_INTERVAL = 1 s).
* A session that keeps sending invalid events is dropped.
(The causal buffer's byte bound is unit-tested in tests/test_history.py.)
"""

from __future__ import annotations

import time

import pytest

from p2p import limits
from p2p.net.rejections import Rejections
from p2p.wire.messages import Events, Ping, Pong, Summary

from peers import Peer, wait_until
from rogue import AuthenticatedRogue, dir_event, limits_hook

pytestmark = pytest.mark.slow

SECRET = "rejected-events-test-secret-0123456789"
WAIT = 60.0
INTERVAL = 1.0


@pytest.fixture
def target(make_peer, tmp_path, monkeypatch):
    for name, value in limits_hook(tmp_path / "hook", REJECT_LOG_INTERVAL=INTERVAL).items():
        monkeypatch.setenv(name, value)
    return make_peer("T", secret=SECRET).start()


def bad(origin: str, seq: int, name: str) -> dict:
    return dir_event(origin, seq, f"../outside/{name}")   # rejected: a '..' segment


def rejected_lines(peer: Peer, rogue) -> list:
    return [line for line in peer.output().splitlines() if f"rejected an event from {rogue.device_id[:7]}" in line]


def events_received(rogue) -> set:
    return {e["path"] for m in rogue.received_of(Events) for e in m.events}


def test_an_invalid_event_never_makes_t_believe_the_peer_has_its_events(target):
    rogue = AuthenticatedRogue((target.host, target.port), SECRET.encode()).start_reader()
    try:
        target.write("before.txt", b"before")
        rogue.send(Summary(vv={}))
        wait_until(lambda: "before.txt" in events_received(rogue), WAIT, "T's backfill")
        rogue.send_events([bad(rogue.peer_id, 1000, "claims-t-seq-1000")])   # T's own origin, seq 1000
        wait_until(lambda: rejected_lines(target, rogue), WAIT, "T to reject it")
        target.write("after.txt", b"after")
        wait_until(lambda: "after.txt" in events_received(rogue), WAIT,
                   "T's next event to reach the peer (not withheld as if it had seq 1000 already)")
    finally:
        rogue.close()


def test_rejections_are_logged_with_a_count_and_a_peer_that_keeps_sending_them_is_dropped(target):
    rogue = AuthenticatedRogue((target.host, target.port), SECRET.encode()).start_reader()
    try:
        rogue.send_events([bad(rogue.device_id, i, f"first-{i}") for i in range(1, 51)])
        wait_until(lambda: rejected_lines(target, rogue), WAIT, "T to reject them")
        started = time.monotonic()
        rogue.send(Ping(nonce=7))   # T reads in order: once it answers, it has handled the whole batch
        wait_until(lambda: [m for m in rogue.received_of(Pong) if m.nonce == 7], WAIT, "T's pong")
        assert len(rejected_lines(target, rogue)) == 1, "one line for a batch of 50, not 50"
        wait_until(lambda: time.monotonic() - started > INTERVAL, WAIT, "the interval to pass")
        rogue.send_events([bad(rogue.device_id, 51, "second")])
        wait_until(lambda: len(rejected_lines(target, rogue)) == 2, WAIT, "the next line")
        assert "(and 49 more like it since the last such line)" in rejected_lines(target, rogue)[1]
        assert not rogue.closed.is_set(), "51 invalid events: not yet too many"
        rogue.send_events([bad(rogue.device_id, i, f"third-{i}") for i in range(52, 112)])
        assert rogue.closed.wait(limits.IDLE_TIMEOUT / 2), "T kept a peer that keeps sending invalid events"
        wait_until(lambda: f"dropping {rogue.device_id[:7]}: it sent 111 invalid events" in target.output(), WAIT,
                   "T to say why")
        wait_until(lambda: f"rejected events from {rogue.device_id[:7]}: 60 more like:" in target.output(), WAIT,
                   "the count not said yet, at the end of the session")
        assert len(rejected_lines(target, rogue)) == 2
        assert target.alive()
    finally:
        rogue.close()


def test_a_sender_that_invents_reasons_gets_a_bounded_number_of_lines():
    rejections = Rejections()
    lines = [rejections.note(f"a block is a [hash, size] pair, not [{'x, ' * i}]", "line", True, 0.0)
             for i in range(1000)]
    assert sum(line is not None for line in lines) == limits.MAX_REJECT_KINDS + 1
    assert rejections.too_many() and rejections.invalid_count == 1000
    unsaid = 1000 - limits.MAX_REJECT_KINDS - 1      # all in the one kind for the others
    later = rejections.note("a new reason", "line", False, limits.REJECT_LOG_INTERVAL)
    assert later == f"line (and {unsaid} more like it since the last such line)"
