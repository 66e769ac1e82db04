"""The README's "beyond one LAN" recipe, for real: static `--peer` with
discovery off between two networks that only a router joins.

Inside network namespaces this test makes and removes: two bridges (two LANs,
no uplink), joined only through a router namespace with IP forwarding on (in
that namespace only), so no broadcast crosses; one peer on each LAN. And the
SSH-tunnel form of the recipe on loopback: a peer that is reached only
through a forwarded port (as `ssh -L` makes one) syncs both ways.
"""

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from peers import Peer, wait_until

pytestmark = pytest.mark.slow

SECRET = "a long phrase only these peers know"


def _can_make_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["ip", "netns", "add", f"p2pprobe{os.getpid()}"], capture_output=True)
    subprocess.run(["ip", "netns", "del", f"p2pprobe{os.getpid()}"], capture_output=True)
    return probe.returncode == 0


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def two_routed_lans():
    """(host on LAN 1, host on LAN 2) as (namespace, address), and the router's namespace."""
    tag = f"p2pr{os.getpid()}"
    lan1, lan2, router, a, b = (f"{tag}{n}" for n in ("sw1", "sw2", "rt", "a", "b"))
    made = []
    try:
        for ns in (lan1, lan2, router, a, b):
            ip("netns", "add", ns)
            made.append(ns)
        for switch in (lan1, lan2):
            ip("-n", switch, "link", "add", "br0", "type", "bridge")
            ip("-n", switch, "link", "set", "br0", "up")
        # host a and the router's eth1 on LAN 1; host b and the router's eth2 on LAN 2
        for switch, port, ns, dev, address in ((lan1, "va", a, "eth0", "10.78.1.2/24"),
                                               (lan1, "vr", router, "eth1", "10.78.1.1/24"),
                                               (lan2, "vb", b, "eth0", "10.78.2.2/24"),
                                               (lan2, "vr", router, "eth2", "10.78.2.1/24")):
            ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns)
            ip("-n", switch, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "addr", "add", address, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        ip("-n", a, "route", "add", "default", "via", "10.78.1.1")
        ip("-n", b, "route", "add", "default", "via", "10.78.2.1")
        yield (a, "10.78.1.2"), (b, "10.78.2.2"), router
    finally:
        for ns in reversed(made):
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and `ip netns`")
def test_static_peers_across_a_router_sync_with_discovery_off(tmp_path, two_routed_lans):
    (a_ns, a_addr), (b_ns, b_addr), _ = two_routed_lans
    a = Peer(tmp_path, "a", netns=a_ns, host=a_addr, port=9998, peers=[f"{b_addr}:9998"], secret=SECRET)
    b = Peer(tmp_path, "b", netns=b_ns, host=b_addr, port=9998, peers=[f"{a_addr}:9998"], secret=SECRET)
    try:
        a.start()
        b.start()
        a.write("from-lan-1/report.txt", b"across the router\n" * 1000)
        wait_until(lambda: b.has("from-lan-1/report.txt", b"across the router\n" * 1000), 30, "a's file on b")
        b.write("reply.txt", b"and back")
        wait_until(lambda: a.has("reply.txt", b"and back"), 30, "b's file on a")
    finally:
        a.stop()
        b.stop()


LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 9999))
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
try:
    print(s.recvfrom(100)[0].decode(), flush=True)
except socket.timeout:
    print("nothing", flush=True)
"""
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.sendto(b"announce", (sys.argv[1], 9999))
"""


@pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and `ip netns`")
def test_discovery_broadcast_does_not_cross_the_router(two_routed_lans):
    """Why the recipe needs --peer: a broadcast on LAN 1 (UDP 9999, what
    discovery sends) reaches the router's side of LAN 1 and never LAN 2."""
    (a_ns, _), (b_ns, _), router = two_routed_lans

    def listen(ns, seconds):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTEN, str(seconds)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        return proc

    on_lan1, on_lan2 = listen(router, 10), listen(b_ns, 2)
    try:
        lan1 = ipaddress.ip_interface("10.78.1.2/24").network   # LAN 1 as the fixture addresses it
        subprocess.run(["ip", "netns", "exec", a_ns, sys.executable, "-c", SEND, str(lan1.broadcast_address)],
                       check=True)
        assert on_lan1.communicate(timeout=15)[0] == "announce\n"  # it was sent, and LAN 1 heard it
        assert on_lan2.communicate(timeout=15)[0] == "nothing\n"
    finally:
        for proc in (on_lan1, on_lan2):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Forwarder:
    """What `ssh -L LOCAL:127.0.0.1:REMOTE` gives: a port that carries each
    connection to another (here on loopback, in threads)."""

    def __init__(self, target):
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.used = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.used += 1
            upstream = socket.create_connection(self.target)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.server.close()


def test_a_peer_reached_only_through_a_tunnel_syncs_both_ways(make_peer):
    a = make_peer("a", secret=SECRET).start()            # the side behind the tunnel: names no one
    tunnel = Forwarder(("127.0.0.1", a.port))
    try:
        b = make_peer("b", secret=SECRET, peers=[f"127.0.0.1:{tunnel.port}"]).start()
        a.write("behind.txt", b"from behind the tunnel")
        wait_until(lambda: b.has("behind.txt", b"from behind the tunnel"), 30, "a's file on b")
        b.write("front.txt", b"to the far side")
        wait_until(lambda: a.has("front.txt", b"to the far side"), 30, "b's file on a")
        assert tunnel.used >= 1
    finally:
        tunnel.close()
