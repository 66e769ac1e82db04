"""``p2p id``: print this peer's device id. Read-only: a home without an
identity yet is reported (``p2p run`` creates the key at its first start)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from p2p.security.identity import KEY_FILE, Identity, IdentityError, format_device_id


def run(args) -> int:
    try:
        identity = Identity.load(Path(args.home))
    except FileNotFoundError:
        print(f"p2p id: no identity in {os.path.abspath(args.home)} yet (no {KEY_FILE}): "
              f"`p2p run` creates it at its first start there", file=sys.stderr)
        return 1
    except IdentityError as error:
        print(f"p2p id: {error}", file=sys.stderr)
        return 1
    print(format_device_id(identity.device_id))
    print(f"short: {identity.short_id}")
    return 0
