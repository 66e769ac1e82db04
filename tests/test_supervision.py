"""No component dies silently: a crash is logged once with its context and the
component restarts (after re-queueing what it may have dropped), or the peer
stops with a non-zero exit when it keeps crashing."""

import logging
from pathlib import Path

import gevent

from p2p import limits
from p2p.net.supervisor import Supervisor
from peers import wait_until

FAULTY = str(Path(__file__).resolve().parent / "faulty_peer.py")


def test_a_crash_is_logged_once_and_the_loop_restarts_after_recovering(monkeypatch, caplog):
    monkeypatch.setattr(limits, "RESTART_DELAY", 0.01)
    calls, recovered, fatal = [], [], []

    def loop():
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("boom")

    supervisor = Supervisor(fatal.append)
    with caplog.at_level(logging.ERROR):
        supervisor.spawn(loop, recover=lambda: recovered.append(1)).join(timeout=5)
    assert len(calls) == 2 and recovered == [1] and fatal == []
    [record] = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert "loop" in record.getMessage() and record.exc_info[0] is KeyError


def test_a_component_that_keeps_crashing_is_fatal(monkeypatch):
    monkeypatch.setattr(limits, "RESTART_DELAY", 0.001)
    fatal = []

    def always():
        raise ValueError("again")

    Supervisor(fatal.append).spawn(always).join(timeout=5)
    assert len(fatal) == 1 and "ValueError: again" in fatal[0]


def test_killing_a_supervised_greenlet_is_not_a_crash(monkeypatch):
    fatal = []
    supervisor = Supervisor(fatal.append)
    supervisor.spawn(gevent.sleep, 30)
    gevent.sleep(0)
    supervisor.kill(timeout=2)
    assert not supervisor.group and fatal == []


def test_a_real_peer_survives_a_crash_of_its_local_loop(make_peer):
    a = make_peer("a", program=[FAULTY, "once"]).start()
    b = make_peer("b", peers=[a]).start()
    a.write("first.txt", b"written when the loop crashed\n")
    wait_until(lambda: b.has("first.txt", b"written when the loop crashed\n"), 30, "first.txt on b")
    a.write("second.txt", b"after the restart\n")
    wait_until(lambda: b.has("second.txt", b"after the restart\n"), 30, "second.txt on b")
    out = a.output()
    assert out.count("RuntimeError: injected fault in the local loop") == 1 and out.count("crashed; restarting") == 1
    assert a.alive()


def test_a_real_peer_whose_component_keeps_crashing_exits_non_zero(make_peer):
    a = make_peer("a", program=[FAULTY, "always"]).start()
    wait_until(lambda: not a.alive(), 30, "a to stop")
    assert a.stop() == 1
    assert "stopping: " in a.output() and "keeps failing" in a.output()
