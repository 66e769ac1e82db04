"""``p2p id``: print this peer's device id (creating the identity on first use)."""

from __future__ import annotations

import sys
from pathlib import Path

from p2p.security.identity import Identity, IdentityError, format_device_id


def run(args) -> int:
    try:
        identity = Identity.load_or_create(Path(args.home))
    except IdentityError as error:
        print(f"p2p id: {error}", file=sys.stderr)
        return 1
    print(format_device_id(identity.device_id))
    print(f"short: {identity.short_id}")
    return 0
