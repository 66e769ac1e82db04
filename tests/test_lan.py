"""The README's "two computers on a LAN", for real: scripts/lan.sh builds
network-namespace hosts on a private bridge (no uplink) and runs the plain
default `make run` (LAN broadcast discovery) in each."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

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
