"""Shared fixtures: a factory of real peer processes that are always stopped."""

import os

import pytest
from hypothesis import settings

from peers import Peer

settings.register_profile("fuzz", max_examples=int(os.environ.get("P2P_FUZZ_EXAMPLES", "20000")), deadline=None)
if os.environ.get("P2P_FUZZ_EXAMPLES"):
    settings.load_profile("fuzz")


@pytest.fixture
def make_peer(tmp_path):
    started = []

    def make(name, **kwargs) -> Peer:
        peer = Peer(tmp_path, name, **kwargs)
        started.append(peer)
        return peer

    yield make
    for peer in started:
        if peer.alive():
            peer.stop()
    for peer in started:
        if os.environ.get("P2P_SHOW_LOGS"):
            print(f"===== {peer.name}\n{peer.output()}")
