"""`p2p pause [PEER]` and `p2p resume [PEER]`: pause or resume syncing in the
running peer, the whole folder (no PEER) or the exchange with one peer
(``p2p.net.pause`` says what each holds). Prints what is paused afterwards."""

from __future__ import annotations

import sys

from p2p.net.control import ask
from p2p.verdict import describe_paused


def run(args) -> int:
    try:
        reply = ask(args.home, {"cmd": args.command, "peer": args.peer})
    except OSError:
        print(f"p2p {args.command}: no peer is running with home {args.home}", file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"p2p {args.command}: {reply['error']}", file=sys.stderr)
        return 1
    print(describe_paused(reply))
    return 0
