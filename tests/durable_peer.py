"""`p2p` that checks, as it runs, that every event of its own it sends a peer
is already durable in events.jsonl (for tests/test_rules_kept.py).

``os.fsync`` and ``os.fdatasync`` are wrapped to note how much of
events.jsonl is durable (its size when its descriptor was last synced);
``Session.send_events`` (the broadcaster) and ``Session._send_batch_now``
(a backfill) check that each event of this peer's own origin starts within
that size, and print ``NOT DURABLE WHEN SENT <id>`` to stderr if not, and
``SENT OWN EVENT <id>`` otherwise. Nothing else of p2p is changed.

Usage: python tests/durable_peer.py run ...(p2p run's flags).
"""

import os
import sys

from p2p.__main__ import patch

patch()

from p2p.net.session import Session  # noqa: E402

durable = {"size": 0}


def noting_durable_size(real):
    def sync(fd):
        real(fd)
        try:
            if os.readlink(f"/proc/self/fd/{fd}").endswith("/events.jsonl"):
                durable["size"] = max(durable["size"], os.fstat(fd).st_size)
        except OSError:
            pass
    return sync


os.fsync = noting_durable_size(os.fsync)
os.fdatasync = noting_durable_size(os.fdatasync)


def check(session, events) -> None:
    node = session.node
    for event in events:
        if event.origin == node.device_id:
            offset = node.history._offset_of(event.id)
            verdict = "SENT OWN EVENT" if offset is not None and offset < durable["size"] else "NOT DURABLE WHEN SENT"
            print(f"{verdict} {event.id}", file=sys.stderr, flush=True)


def checked(real):
    def send(self, events):
        check(self, events)
        return real(self, events)
    return send


Session.send_events = checked(Session.send_events)
Session._send_batch_now = checked(Session._send_batch_now)

from p2p.cli import main  # noqa: E402

sys.exit(main())
