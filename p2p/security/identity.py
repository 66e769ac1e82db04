"""A peer's long-term identity: its Ed25519 key pair and the device id derived from it.

The private key lives in ``HOME/.p2p/identity.key`` (PKCS#8 PEM, mode 0600),
created at first use and published atomically: written to a private temporary
file, then hard-linked into place, so a reader never sees half a key and two
processes starting at once agree on one key. A key file that group or others
can read is refused, as ssh refuses one.

The device id is the first 32 characters of base32(sha256(public key)):
160 bits, ``A-Z2-7``; shown to humans as four dash-separated groups of eight.

A device id names one home on one machine: it issues event ids
``ID:1, ID:2, ...`` and must never issue one twice, which two copies of a
home would. ``HOME/.p2p/home.fingerprint`` records where the home lives
(``home_fingerprint``: the machine id, the file system id and the inode of
``.p2p``): a copy (``cp -a``, rsync, a restored backup, another machine)
changes it, a rename on the same file system does not. ``Identity.replace``
takes a new key pair and keeps the old key aside as
``identity.key.retired-<ID>``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Callable, Optional

import ujson

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from p2p.security.private import create_private

KEY_FILE = Path(".p2p") / "identity.key"
FINGERPRINT_FILE = Path(".p2p") / "home.fingerprint"
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
DEVICE_ID_LENGTH = 32        # base32 characters: 160 bits of sha256(public key)
DEVICE_ID_GROUP = 8          # characters per dash-separated group in the human form
SHORT_ID_LENGTH = 7          # enough to tell the peers of one LAN apart at a glance
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32

_DEVICE_ID_RE = re.compile(r"[A-Z2-7]{%d}" % DEVICE_ID_LENGTH)
_SEPARATORS_RE = re.compile(r"[\s-]+")


class IdentityError(Exception):
    """The identity key file is unusable (too open, not a file, corrupt)."""


def device_id_from_public(public: bytes) -> str:
    """The canonical device id of a raw 32-byte Ed25519 public key."""
    if len(public) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, not {len(public)}")
    digest = hashlib.sha256(public).digest()
    return base64.b32encode(digest).decode("ascii")[:DEVICE_ID_LENGTH]


def format_device_id(device_id: str) -> str:
    """The human form: ``XXXXXXXX-XXXXXXXX-XXXXXXXX-XXXXXXXX``."""
    canonical = parse_device_id(device_id)
    return "-".join(canonical[i:i + DEVICE_ID_GROUP] for i in range(0, DEVICE_ID_LENGTH, DEVICE_ID_GROUP))


def device_id_prefix(text: str) -> str:
    """A device id or the start of one as a human typed it, in canonical form
    (dashes and spaces dropped, upper case), for matching against known ids."""
    return _SEPARATORS_RE.sub("", text).upper()


def parse_device_id(text: str) -> str:
    """The canonical form of a device id typed by a human.

    Accepts dashes, spaces and lower case; raises ValueError for anything
    that is not 32 base32 characters.
    """
    canonical = device_id_prefix(text)
    if not _DEVICE_ID_RE.fullmatch(canonical):
        raise ValueError(f"not a device id: {text!r} (expected {DEVICE_ID_LENGTH} characters A-Z, 2-7)")
    return canonical


def verify(public: bytes, data: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``data`` by ``public``."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        key = eddsa.import_public_key(bytes(public))
        eddsa.new(key, "rfc8032").verify(bytes(data), bytes(signature))
    except ValueError:
        return False
    return True


class Identity:
    """An Ed25519 key pair and the device id it names."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, not {len(seed)}")
        self._key = eddsa.import_private_key(bytes(seed))
        self._signer = eddsa.new(self._key, "rfc8032")
        self.public: bytes = self._key.public_key().export_key(format="raw")
        self.device_id: str = device_id_from_public(self.public)

    @property
    def short_id(self) -> str:
        return self.device_id[:SHORT_ID_LENGTH]

    def sign(self, data: bytes) -> bytes:
        return self._signer.sign(bytes(data))

    def __repr__(self) -> str:
        return f"Identity({format_device_id(self.device_id)})"

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom) -> "Identity":
        return cls(rng(SEED_SIZE))

    @classmethod
    def load(cls, home: Path) -> "Identity":
        """The identity stored under ``home``; FileNotFoundError if it has none yet
        (nothing is created: for read-only commands such as ``p2p id``)."""
        return cls._load(Path(home) / KEY_FILE)

    @classmethod
    def load_or_create(cls, home: Path, rng: Callable[[int], bytes] = os.urandom) -> "Identity":
        """The identity stored under ``home``, created there on first use."""
        path = Path(home) / KEY_FILE
        try:
            return cls._load(path)
        except FileNotFoundError:
            pass
        identity = cls.generate(rng)
        try:
            _publish_private_file(path, identity._pem())
        except FileExistsError:  # another process created it first: use theirs
            return cls._load(path)
        return identity

    @classmethod
    def replace(cls, home: Path, rng: Callable[[int], bytes] = os.urandom) -> "Identity":
        """Take a new identity for ``home``; the current key file is kept aside
        as ``identity.key.retired-<DEVICE ID>`` (never deleted)."""
        path = Path(home) / KEY_FILE
        old = cls._load(path)
        os.replace(path, path.with_name(f"{path.name}.retired-{old.device_id}"))
        identity = cls.generate(rng)
        _publish_private_file(path, identity._pem())
        return identity

    def _pem(self) -> bytes:
        return self._key.export_key(format="PEM").encode("ascii") + b"\n"

    @classmethod
    def _load(cls, path: Path) -> "Identity":
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise
        except OSError as error:  # ELOOP: a symlink, which we never follow
            raise IdentityError(f"cannot open {path}: {error.strerror} (it must be a regular file)") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise IdentityError(f"{path} is not a regular file")
            if info.st_mode & 0o077:
                raise IdentityError(
                    f"permissions {stat.S_IMODE(info.st_mode):04o} for {path} are too open: "
                    f"the private key must not be readable by group or others. "
                    f"Run: chmod 600 {path}"
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                text = handle.read()
        finally:
            os.close(fd)
        try:
            key = ECC.import_key(text)
        except ValueError as error:
            raise IdentityError(f"{path} does not hold an Ed25519 private key: {error}") from None
        if key.curve != "Ed25519" or not key.has_private():
            raise IdentityError(f"{path} does not hold an Ed25519 private key")
        return cls(key.seed)


def _publish_private_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` (mode 0600) atomically, never replacing a file.

    Raises FileExistsError if ``path`` already exists.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # atomic, and fails rather than replace
    finally:
        os.unlink(temporary)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- where a home lives -----------------------------------------------------------

def _machine_id() -> str:
    for name in MACHINE_ID_FILES:
        try:
            return Path(name).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
    return ""


def home_fingerprint(home: Path) -> dict:
    """Where ``home`` lives: this machine's id, and the file system id (stable
    across reboots, unlike ``st_dev``; ``st_dev`` where there is none) and inode
    of its ``.p2p`` directory."""
    directory = Path(home) / KEY_FILE.parent
    info = os.stat(directory)
    return {"machine": _machine_id(), "fs": os.statvfs(directory).f_fsid or info.st_dev, "inode": info.st_ino}


def home_copied(home: Path, device_id: str) -> Optional[str]:
    """Why ``home``, last run as ``device_id``, is not where it was then (a copy), or None.

    No record yet, or a record of another device id (the key was replaced by
    hand), is not a copy: call ``record_home`` to start recording."""
    try:
        recorded = ujson.loads((Path(home) / FINGERPRINT_FILE).read_bytes())
        if recorded.get("device") != device_id:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    here = home_fingerprint(home)
    changed = [key for key in ("machine", "fs", "inode") if recorded.get(key) != here[key]]
    if not changed:
        return None
    what = "another machine" if "machine" in changed else "another place"
    return f"this home was copied from {what} ({', '.join(changed)} of {KEY_FILE.parent} changed)"


def record_home(home: Path, device_id: str) -> None:
    """Record where ``home`` lives now, as ``device_id`` (atomically)."""
    path = Path(home) / FINGERPRINT_FILE
    record = dict(home_fingerprint(home), device=device_id)
    try:
        if ujson.loads(path.read_bytes()) == record:
            return
    except (OSError, ValueError):
        pass
    temp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(create_private(temp, os.O_WRONLY | os.O_TRUNC), "wb") as out:
        out.write(ujson.dumps(record).encode("ascii") + b"\n")
    os.replace(temp, path)
