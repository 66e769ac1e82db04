"""Peers never mix protocol versions silently: a Hello of another version
closes that channel with one line saying both versions; the peer goes on."""

import pytest

from p2p.net.session import PROTOCOL_VERSION
from p2p.wire.messages import Hello
from peers import Peer, wait_until
from rogue import AuthenticatedRogue

pytestmark = pytest.mark.slow

SECRET = "protocol-version-test-secret-0123456789"
WAIT = 60.0


@pytest.mark.parametrize("old", [1, 2])   # 2: fixed-size blocks, which never dedupe with content-defined ones
def test_a_peer_of_another_protocol_version_is_refused_with_one_clear_line(tmp_path, old):
    t = Peer(tmp_path, "T", secret=SECRET).start()
    rogue = None
    try:
        rogue = AuthenticatedRogue((t.host, t.port), SECRET.encode()).start_reader()
        rogue.send(Hello(name="old", port=0, version=old))
        wait_until(rogue.closed.is_set, WAIT, "T to close the channel")
        wait_until(lambda: f"protocol version {old}, this peer speaks {PROTOCOL_VERSION}"
                   in t.output(), WAIT, "T to say why")
        assert t.alive() and t.output().count(f"protocol version {old}, this peer") == 1
    finally:
        if rogue is not None:
            rogue.close()
        t.stop()
