"""Who may join: the cluster secret and the allow-list of device ids.

Reads the secret file and ``HOME/.p2p/trusted``; holds no keys and opens no
sockets. Four modes follow from the two settings:

* neither: open LAN mode. Channels are still encrypted and peers still prove
  their identity, but anyone on the network can join; the start-up line warns.
* secret: only peers that know the secret complete the handshake.
* allow-list: only the listed device ids complete the handshake.
* both: a peer must know the secret and be listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Set

from p2p.security.identity import parse_device_id

TRUSTED_FILE = Path(".p2p") / "trusted"
RECOMMENDED_SECRET_BYTES = 16  # shorter secrets can be guessed offline (see docs/SECURITY.md)


class MembershipError(ValueError):
    """The secret or the allow-list is unusable."""


def load_secret(secret_file: Optional[str], env_secret: Optional[str]) -> Optional[bytes]:
    """The cluster secret, or None for none.

    The file wins over the environment value. One trailing newline (``\\n`` or
    ``\\r\\n``) is stripped, so ``echo secret > file`` works; an empty secret is
    an error rather than a silent open mode.
    """
    if secret_file is not None:
        try:
            secret = Path(secret_file).read_bytes()
        except OSError as error:
            raise MembershipError(f"cannot read the secret file {secret_file}: {error.strerror}") from None
        source = f"the secret file {secret_file}"
    elif env_secret is not None:
        secret = env_secret.encode("utf-8")
        source = "P2P_SECRET"
    else:
        return None
    for ending in (b"\r\n", b"\n"):
        if secret.endswith(ending):
            secret = secret[: -len(ending)]
            break
    if not secret:
        raise MembershipError(f"{source} is empty: give a secret, or none for open LAN mode")
    return secret


def load_trusted(home: Path) -> Optional[Set[str]]:
    """The allow-list from ``HOME/.p2p/trusted``, or None if the file is absent.

    One device id per line, human or canonical form; ``#`` starts a comment.
    An existing file with no ids allows nobody.
    """
    path = Path(home) / TRUSTED_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    trusted = set()
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            trusted.add(parse_device_id(entry))
        except ValueError as error:
            raise MembershipError(f"{path}:{number}: {error}") from None
    return trusted


def mode_description(secret: Optional[bytes], trusted: Optional[Set[str]]) -> str:
    """One start-up line naming the membership mode; starts with ``WARNING:``
    when the peer is open to anyone on the network or its secret is short."""
    if secret is None and trusted is None:
        return ("WARNING: open LAN mode: any device on the network can join and sync this folder "
                "(channels are encrypted, but nobody is kept out). Set --secret-file or P2P_SECRET, "
                "or list device ids in .p2p/trusted.")
    parts = []
    if secret is not None:
        parts.append("cluster secret")
    if trusted is not None:
        parts.append(f"allow-list of {len(trusted)} device id{'s' if len(trusted) != 1 else ''}")
    text = "membership: " + " and ".join(parts) + " required"
    if secret is not None and len(secret) < RECOMMENDED_SECRET_BYTES:
        text = (f"WARNING: {text}; the cluster secret is only {len(secret)} bytes, use at least "
                f"{RECOMMENDED_SECRET_BYTES} random bytes (e.g. `head -c 24 /dev/urandom | base64`)")
    return text

