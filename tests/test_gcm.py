"""The composed AES-256-GCM gives exactly pycryptodome's AES.new bytes, and
refuses whatever was altered, on each of its paths (small; large through
OpenSSL or composed)."""

import os

import pytest
from Crypto.Cipher import AES
from hypothesis import given, settings, strategies as st

from p2p.transport import gcm
from p2p.transport.gcm import Gcm

EXAMPLES = 300
# what seals and opens the large messages: OpenSSL (where libcrypto loads) and the composed path
LARGE_PATHS = pytest.mark.parametrize("native", [
    pytest.param(gcm.OPENSSL, id="openssl",
                 marks=pytest.mark.skipif(gcm.OPENSSL is None, reason="libcrypto not loadable")),
    pytest.param(None, id="composed")])


def reference(key, nonce, aad, data) -> bytes:
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=16)
    cipher.update(aad)
    return cipher.encrypt(data) + cipher.digest()


sizes = st.one_of(st.integers(0, 64), st.integers(0, gcm.COMPOSE_MAX + 100), st.integers(0, 4 * gcm.COMPOSE_MAX))


@LARGE_PATHS
@settings(max_examples=EXAMPLES, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       aad=st.binary(max_size=40), size=sizes, seed=st.randoms())
def test_the_same_bytes_as_aes_new_and_back(native, key, nonce, aad, size, seed):
    data = seed.randbytes(size)
    sealed = Gcm(key, native).seal(nonce, aad, data)
    assert bytes(sealed) == reference(key, nonce, aad, data)
    assert Gcm(key, native).open(nonce, aad, bytes(sealed)) == data
    assert Gcm(key, native).open(nonce, aad, sealed) == data


@LARGE_PATHS
@settings(max_examples=EXAMPLES, deadline=None)
@given(size=sizes, where=st.integers(min_value=0), bit=st.integers(0, 7), part=st.sampled_from("data aad nonce"),
       read_only=st.booleans())
def test_any_change_is_refused(native, size, where, bit, part, read_only):
    key, nonce, aad = bytes(range(32)), bytes(12), b"\x05\x01"
    sealed = bytearray(Gcm(key, native).seal(nonce, aad, bytes(size)))
    if part == "data":
        sealed[where % len(sealed)] ^= 1 << bit
    elif part == "aad":
        aad = bytes([aad[0] ^ (1 << bit), aad[1]])
    else:
        nonce = bytes([1 << bit]) + nonce[1:]
    with pytest.raises(ValueError):
        Gcm(key, native).open(nonce, aad, bytes(sealed) if read_only else sealed)


def test_a_payload_shorter_than_its_tag_is_refused():
    with pytest.raises(ValueError):
        Gcm(bytes(32)).open(bytes(12), b"", b"short")


@LARGE_PATHS
def test_a_large_received_buffer_is_decrypted_where_it_lies(native):
    key, nonce, data = bytes(range(32)), bytes(12), os.urandom(gcm.COMPOSE_MAX + 1000)
    sealed = Gcm(key, native).seal(nonce, b"ab", data)
    assert Gcm(key, native).open(nonce, b"ab", bytes(sealed)) == data     # read-only input: a new buffer
    opened = Gcm(key, native).open(nonce, b"ab", sealed)
    assert opened is sealed and opened == data                    # the frame's own buffer, its tag cut off


class _RenamedGhash:
    """pycryptodome's _GHASH as a release might change it: no ``_exp_key``."""

    def __init__(self, subkey, module):
        self.subkey = subkey


def test_a_changed_private_ghash_is_noticed_and_aes_new_used_instead(monkeypatch):
    assert gcm._composition_agrees()   # this pycryptodome: the composed path is in use
    monkeypatch.setattr(gcm, "_GHASH", _RenamedGhash)
    assert not gcm._composition_agrees()
    monkeypatch.setattr(gcm, "_GHASH", None)   # what the import does then
    key, nonce, aad, data = bytes(range(32)), bytes(12), b"a", os.urandom(3 * gcm.COMPOSE_MAX)
    sealed = Gcm(key).seal(nonce, aad, data)
    assert bytes(sealed) == reference(key, nonce, aad, data)
    assert Gcm(key).open(nonce, aad, sealed) == data


@LARGE_PATHS
@pytest.mark.parametrize("size", [1 << 20, 8 << 20])   # a typical large block's frame, and the largest block
def test_block_sized_frames_are_the_same_bytes_as_aes_new(native, size):
    key, nonce, data = os.urandom(32), os.urandom(12), os.urandom(size)
    sealed = Gcm(key, native).seal(nonce, b"\x05\x01", memoryview(data))
    assert bytes(sealed) == reference(key, nonce, b"\x05\x01", data)
    assert Gcm(key, native).open(nonce, b"\x05\x01", sealed) == data


class _WrongTag:
    """An OpenSSL path as a wrong ctypes declaration might make it: a tag of zeros."""

    def seal_into(self, key, nonce, aad, plaintext, out):
        gcm.OPENSSL.seal_into(key, nonce, aad, plaintext, out)
        out[len(plaintext):] = bytes(gcm.TAG_SIZE)

    def open_into(self, key, nonce, aad, sealed, out):
        gcm.OPENSSL.open_into(key, nonce, aad, sealed, out)


@pytest.mark.skipif(gcm.OPENSSL is None, reason="libcrypto not loadable")
def test_openssl_is_checked_at_import_and_a_wrong_one_noticed():
    assert gcm._composition_agrees(gcm.OPENSSL)
    assert Gcm(bytes(32))._native is gcm.OPENSSL   # in use by default
    assert not gcm._composition_agrees(_WrongTag())
