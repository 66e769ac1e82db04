"""Peer names never carry terminal escapes (issue 15, item 7).

A real `p2p run` T with loopback discovery hears a forged announce from a
stranger, and a rogue member says Hello; both names are full of terminal
controls (ESC sequences, BEL, CR, the C1 CSI, a bidi override). `p2p status`
(text and JSON) and T's log show the names without any of them (`p2p ls` and
`p2p status --watch` show the same registry names).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import unicodedata

import pytest

from p2p.net.announce import Announce
from p2p.net.control import ask
from p2p.wire.messages import Hello
from p2p.wire.text import display_name

from peers import LOOPBACK_BROADCAST, Peer, free_port, wait_until
from rogue import AuthenticatedRogue

pytestmark = pytest.mark.slow

SECRET = "terminal-safety-test-secret-0123456789"
WAIT = 60.0
STRANGER = "Z" * 32
ESCAPES = "\x1b[2J\x1b]0;owned\x07{}\r\x9b31m\u202e\u200b\x7f"
UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def unsafe(text: str) -> list:
    return [c for c in text if unicodedata.category(c) in UNSAFE and c != "\n"]


def p2p(*args):
    return subprocess.run([sys.executable, "-m", "p2p", *args], capture_output=True, text=True, timeout=30)


def test_peer_names_from_discovery_and_hello_are_shown_without_control_characters(tmp_path):
    udp = free_port(socket.SOCK_DGRAM)
    t = Peer(tmp_path, "T", secret=SECRET, discovery=f"{LOOPBACK_BROADCAST}:{udp}").start()
    rogue = None
    try:
        forged = Announce(STRANGER, 1, ESCAPES.format("stranger"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(forged.encode(), ("127.0.0.1", udp))
        rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
        rogue.send(Hello(name=ESCAPES.format("member"), port=0, version=1))

        def names():
            return {p["id"]: p["name"] for p in ask(t.home, {"cmd": "status"})["peers"]}

        wait_until(lambda: {STRANGER, rogue.device_id} <= set(names()), WAIT, "both peers listed by T")
        wait_until(lambda: "member" in names()[rogue.device_id], WAIT, "the member's Hello")
        assert names()[STRANGER] == "[2J]0;ownedstranger31m"
        assert names()[rogue.device_id] == "[2J]0;ownedmember31m"
        status = p2p("status", "--home", str(t.home))
        assert status.returncode == 0 and "[2J]0;owned" in status.stdout, status.stderr
        raw = p2p("status", "--home", str(t.home), "--json")
        for text in (status.stdout, raw.stdout, t.output()):
            assert not unsafe(text), unsafe(text)
    finally:
        if rogue is not None:
            rogue.close()
        t.stop()


def test_display_name_keeps_ordinary_names():
    assert display_name("laptop-de-Zoé 2") == "laptop-de-Zoé 2"
    assert display_name("办公室 ☕") == "办公室 ☕"
    assert display_name("x" * 100) == "x" * 64
    assert display_name("tab\there\nnewline\u2028sep") == "tabherenewlinesep"
