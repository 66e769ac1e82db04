"""Identity keys, device ids, membership settings and ``p2p id``."""

import argparse
import base64
import hashlib
import os
import re
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.commands import id as id_command
from p2p.security.identity import (
    KEY_FILE,
    Identity,
    IdentityError,
    device_id_from_public,
    format_device_id,
    parse_device_id,
    verify,
)
from p2p.security.membership import (
    MembershipError,
    load_secret,
    load_trusted,
    mode_description,
)

EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "200"))
DEVICE_ID = re.compile(r"[A-Z2-7]{32}")
HUMAN_ID = re.compile(r"[A-Z2-7]{8}(-[A-Z2-7]{8}){3}")


# --- the key file ----------------------------------------------------------

def test_key_file_is_created_private_and_stable(tmp_path):
    first = Identity.load_or_create(tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert b"PRIVATE KEY" in path.read_bytes()
    second = Identity.load_or_create(tmp_path)
    assert second.public == first.public
    assert second.device_id == first.device_id
    assert [p.name for p in path.parent.iterdir()] == ["identity.key"]  # no temporary left


def test_key_file_created_under_a_permissive_umask_is_still_private(tmp_path):
    old = os.umask(0)
    try:
        Identity.load_or_create(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path, mode):
    Identity.load_or_create(tmp_path)
    path = tmp_path / KEY_FILE
    path.chmod(mode)
    with pytest.raises(IdentityError, match="too open.*chmod 600"):
        Identity.load_or_create(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == mode  # refused, not silently repaired


def test_symlinked_key_file_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    Identity.load_or_create(elsewhere)
    home = tmp_path / "home"
    (home / ".p2p").mkdir(parents=True)
    (home / KEY_FILE).symlink_to(elsewhere / KEY_FILE)
    with pytest.raises(IdentityError, match="regular file"):
        Identity.load_or_create(home)


def test_corrupt_key_file_is_refused_not_replaced(tmp_path):
    path = tmp_path / KEY_FILE
    path.parent.mkdir()
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="does not hold an Ed25519 private key"):
        Identity.load_or_create(tmp_path)
    assert path.read_bytes() == b"not a key"


def test_seed_round_trips_through_the_key_file(tmp_path):
    seed = bytes(range(32))
    created = Identity.load_or_create(tmp_path, rng=lambda n: seed[:n])
    assert created.public == Identity(seed).public
    assert Identity.load_or_create(tmp_path).public == created.public


# --- device ids --------------------------------------------------------------

def test_device_id_is_base32_of_sha256_of_the_public_key():
    identity = Identity(bytes(32))
    expected = base64.b32encode(hashlib.sha256(identity.public).digest()).decode()[:32]
    assert identity.device_id == expected
    assert DEVICE_ID.fullmatch(identity.device_id)
    assert identity.short_id == identity.device_id[:7]
    assert HUMAN_ID.fullmatch(format_device_id(identity.device_id))


def test_rfc8032_public_key():
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert Identity(seed).public == public
    assert device_id_from_public(public) == Identity(seed).device_id


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.sampled_from(["canonical", "human", "lower", "spaced"]))
def test_parse_format_round_trip(public, style):
    device_id = device_id_from_public(public)
    human = format_device_id(device_id)
    text = {
        "canonical": device_id,
        "human": human,
        "lower": human.lower(),
        "spaced": "  " + human.replace("-", " ") + "\n",
    }[style]
    assert parse_device_id(text) == device_id
    assert format_device_id(text) == human


@pytest.mark.parametrize("text", [
    "",
    "ABC",
    "A" * 31,
    "A" * 33,
    "A" * 31 + "1",           # 1 is not base32
    "A" * 31 + "0",
    "A" * 31 + "=",
    "A" * 31 + "É",
    "AAAAAAAA_AAAAAAAA-AAAAAAAA-AAAAAAAA",
])
def test_bad_device_ids_are_rejected(text):
    with pytest.raises(ValueError):
        parse_device_id(text)


def test_device_id_needs_a_32_byte_key():
    with pytest.raises(ValueError):
        device_id_from_public(b"\x00" * 31)


# --- signatures --------------------------------------------------------------

def test_signature_verifies_and_rejects_tampering():
    identity = Identity.generate()
    other = Identity.generate()
    signature = identity.sign(b"message")
    assert len(signature) == 64
    assert verify(identity.public, b"message", signature)
    assert not verify(identity.public, b"messagE", signature)
    assert not verify(other.public, b"message", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify(identity.public, b"message", flipped)
    assert not verify(identity.public, b"message", signature[:63])
    assert not verify(identity.public[:31], b"message", signature)


def test_rfc8032_signature():
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    expected = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert Identity(seed).sign(b"") == expected


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=32), st.binary(max_size=64), st.binary(max_size=80))
def test_fuzz_verify_never_raises_on_garbage(public, data, signature):
    assert verify(public, data, signature) in (True, False)


# --- membership --------------------------------------------------------------

def test_secret_from_file_strips_one_trailing_newline(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"correct horse battery staple\n")
    assert load_secret(str(path), "ignored") == b"correct horse battery staple"
    path.write_bytes(b"s3cret\r\n")
    assert load_secret(str(path), None) == b"s3cret"
    path.write_bytes(b"s3cret\n\n")
    assert load_secret(str(path), None) == b"s3cret\n"


def test_secret_from_environment_and_none():
    assert load_secret(None, "from-env") == b"from-env"
    assert load_secret(None, None) is None


def test_empty_or_missing_secret_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    with pytest.raises(MembershipError, match="empty"):
        load_secret(str(empty), None)
    with pytest.raises(MembershipError, match="cannot read"):
        load_secret(str(tmp_path / "absent"), None)


def test_trusted_file(tmp_path):
    assert load_trusted(tmp_path) is None
    a, b = Identity.generate(), Identity.generate()
    (tmp_path / ".p2p").mkdir()
    (tmp_path / ".p2p" / "trusted").write_text(
        f"# the office\n{format_device_id(a.device_id).lower()}  # laptop\n\n{b.device_id}\n")
    assert load_trusted(tmp_path) == {a.device_id, b.device_id}
    (tmp_path / ".p2p" / "trusted").write_text("# nobody yet\n")
    assert load_trusted(tmp_path) == set()
    (tmp_path / ".p2p" / "trusted").write_text(f"{a.device_id}\nnot-an-id\n")
    with pytest.raises(MembershipError, match="trusted:2"):
        load_trusted(tmp_path)


def test_mode_descriptions():
    assert mode_description(None, None).startswith("WARNING: open LAN mode")
    assert mode_description(b"x" * 32, None) == "membership: cluster secret required"
    assert mode_description(None, {"A" * 32}) == "membership: allow-list of 1 device id required"
    both = mode_description(b"x" * 32, {"A" * 32, "B" * 32})
    assert both == "membership: cluster secret and allow-list of 2 device ids required"
    assert mode_description(b"short", None).startswith("WARNING:")


# --- p2p id ------------------------------------------------------------------

def test_id_command_prints_human_id_and_short_id(tmp_path, capsys):
    identity = Identity.load_or_create(tmp_path)
    assert id_command.run(argparse.Namespace(home=str(tmp_path))) == 0
    first = capsys.readouterr().out.splitlines()
    assert first == [format_device_id(identity.device_id), f"short: {identity.short_id}"]
    assert HUMAN_ID.fullmatch(first[0])
    assert id_command.run(argparse.Namespace(home=str(tmp_path))) == 0
    assert capsys.readouterr().out.splitlines() == first
