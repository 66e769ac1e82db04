"""`p2p` with one fault injected, for the supervision tests: a real peer
process whose chosen component raises, as a bug would.

Usage: python tests/faulty_peer.py once|always run ...(p2p run's flags).
``once``: the local loop's first scan of a batch of changes raises; ``always``: the
housekeeping loop raises every time it runs.
"""

import sys

from p2p.__main__ import patch

patch()

from p2p.net.local_changes import LocalChanges  # noqa: E402
from p2p.net.node import Node  # noqa: E402

mode = sys.argv.pop(1)

if mode == "once":
    real_scan = LocalChanges._scan
    fired = []

    def scan_once(self, paths, *shallow):
        if self.scanned.is_set() and not fired:   # the first batch after the start-up scan
            fired.append(True)
            raise RuntimeError("injected fault in the local loop")
        return real_scan(self, paths, *shallow)

    LocalChanges._scan = scan_once
else:
    def housekeeping_always_fails(self):
        raise RuntimeError("injected fault in housekeeping")

    Node._housekeeping_loop = housekeeping_always_fails

from p2p.cli import main  # noqa: E402

sys.exit(main())
