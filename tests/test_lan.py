"""The README's "two computers on a LAN", for real: scripts/lan.sh builds
network-namespace hosts on a private bridge (no uplink) and runs the plain
default `make run` (LAN broadcast discovery) in each; Ctrl-C removes all it made."""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from peers import wait_until

REPO = Path(__file__).resolve().parent.parent


def _can_make_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["ip", "netns", "add", f"p2pprobe{os.getpid()}"], capture_output=True)
    subprocess.run(["ip", "netns", "del", f"p2pprobe{os.getpid()}"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and `ip netns`")
def test_three_hosts_on_a_private_lan_sync_with_the_real_default():
    result = subprocess.run([str(REPO / "scripts" / "lan.sh"), "3", "--check"], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 3 hosts have host1's file, byte for byte" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and `ip netns`")
def test_ctrl_c_removes_everything_the_demo_made(tmp_path):
    """Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it)
    stops every host and removes the namespaces and the hosts' folders."""
    out_path = tmp_path / "lan.out"
    with open(out_path, "w") as out:
        demo = subprocess.Popen([str(REPO / "scripts" / "lan.sh"), "2"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    tag = f"p2p{demo.pid}"
    namespaces = [f"{tag}h1", f"{tag}h2", f"{tag}sw"]
    work = None
    try:
        wait_until(lambda: "Ctrl-C stops every host" in out_path.read_text() or demo.poll() is not None, 60,
                   "the demo to start")
        text = out_path.read_text()
        assert demo.poll() is None, text
        work = re.search(r"folder (/tmp/p2p-lan\.\w+)/host1/shared", text).group(1)
        assert f"p2p status --home {work}/host1" in text and f"p2p status --home {work}/host2" in text
        for i in (1, 2):
            log = Path(work) / f"host{i}" / "run.log"
            wait_until(lambda: "scanned the folder" in log.read_text(errors="replace"), 60, f"host{i} to run")
        hosts = [int(pid) for ns in namespaces[:2] for pid in
                 subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()]
        assert hosts, "no process runs in the hosts"
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(60) == 0, out_path.read_text()
        assert f"removed their namespaces and {work}" in out_path.read_text()
        assert not os.path.exists(work)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(ns in listed for ns in namespaces), listed
        assert not [pid for pid in hosts if os.path.exists(f"/proc/{pid}")]
    finally:  # whatever the script left behind, if it failed
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for ns in namespaces:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if work:
            shutil.rmtree(work, ignore_errors=True)
