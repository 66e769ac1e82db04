"""`p2p pause [PEER]` and `p2p resume [PEER]`: pause or resume syncing in the
running peer, the whole folder (no PEER) or the exchange with one peer
(``p2p.net.pause`` says what each holds). Prints what is paused afterwards."""

from __future__ import annotations

import sys

from p2p.net.control import ask


def describe(paused: dict) -> str:
    """What is paused, in one line (also used by `p2p status`)."""
    parts = []
    if paused.get("folder"):
        parts.append("the folder (no local change recorded, nothing written)")
    parts += [f"peer {device_id[:7]}" for device_id in paused.get("peers", ())]
    return "paused: " + ", ".join(parts) if parts else "nothing is paused"


def run(args) -> int:
    try:
        reply = ask(args.home, {"cmd": args.command, "peer": args.peer})
    except OSError:
        print(f"p2p {args.command}: no peer is running with home {args.home}", file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"p2p {args.command}: {reply['error']}", file=sys.stderr)
        return 1
    print(describe(reply))
    return 0
