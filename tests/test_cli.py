"""The command line: help for every sub-command, clear errors for bad settings."""

import subprocess
import sys

import pytest

from peers import wait_until

COMMANDS = ["run", "status", "log", "restore", "ls", "id", "gui", "pause", "resume"]


def p2p(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "p2p", *args], capture_output=True, text=True, timeout=30, **kwargs)


def test_help_lists_every_sub_command():
    out = p2p("--help")
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_sub_command_has_help_with_home(command):
    out = p2p(command, "--help")
    assert out.returncode == 0 and "--home" in out.stdout


@pytest.mark.parametrize("flag, value", [("--listen", "127.0.0.1:notaport"), ("--peer", "host:99999"),
                                         ("--discovery", "127.255.255.255:x")])
def test_a_bad_setting_is_a_clear_error(tmp_path, flag, value):
    out = p2p("run", "--home", str(tmp_path), "--discovery", "off", flag, value)
    assert out.returncode == 2
    assert out.stderr.startswith("p2p run: ") and "Traceback" not in out.stderr


def test_two_peers_on_one_home_is_a_clear_error(make_peer):
    first = make_peer("a").start()
    out = p2p("run", "--home", str(first.home), "--listen", "127.0.0.1:0", "--discovery", "off")
    assert out.returncode == 2
    assert "in use by another p2p process" in out.stderr and "Traceback" not in out.stderr
    assert first.alive()


def test_id_prints_the_device_id_and_keeps_it(tmp_path):
    from p2p.security.identity import Identity

    Identity.load_or_create(tmp_path)  # `p2p run` makes it; `p2p id` only reads it (tests/test_read_only_cmds.py)
    first, second = p2p("id", "--home", str(tmp_path)), p2p("id", "--home", str(tmp_path))
    assert first.returncode == 0 and first.stdout == second.stdout
    device = first.stdout.splitlines()[0]
    assert len(device) == 35 and device.count("-") == 3


def test_sigterm_stops_a_peer_cleanly(make_peer):
    peer = make_peer("a").start()
    wait_until(peer.alive, 5, "peer running")
    assert peer.stop() == 0
