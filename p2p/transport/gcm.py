"""AES-256-GCM (NIST SP 800-38D) for one key, with its set-up done once.

``AES.new(key, AES.MODE_GCM, nonce=...)`` expands the AES key three times and
the GHASH key once for every message: about 120 us, then about 290 us for a
whole 200-byte frame on this project's 2-core VM, so a channel of small
frames spent most of its time building cipher objects. A channel seals every
frame of one direction under one key, so ``Gcm`` keeps, per key, the expanded
AES key (one ECB cipher) and the hash subkey H = E(K, 0^128), and composes
each small message from pycryptodome's own primitives: the counter blocks
J0, J0+1, ... encrypted by that ECB cipher in one call give the tag mask and
the CTR keystream; the data is XORed with it (as Python integers: a foreign
call per XOR cost more, and each releases the GIL, which the hub then waits
to get back from the bulk threads); pycryptodome's C GHASH, its key expanded
once per key too, authenticates AAD and ciphertext: two foreign calls a
message in all. Payloads above ``COMPOSE_MAX`` go
through ``AES.new`` as before (its per-message cost is amortised there, and
it hashes large inputs on several threads). Both paths give the same bytes:
tests/test_gcm.py checks them against ``AES.new`` on random inputs, and
tampering against both. Only 12-byte nonces (J0 = nonce || 0x00000001).
"""

from __future__ import annotations

import hmac
import struct

from Crypto.Cipher import AES

try:   # pycryptodome's C GHASH (carry-less multiplication when the CPU has it)
    from Crypto.Cipher._mode_gcm import _GHASH, _ghash_clmul, _ghash_portable
    from Crypto.Util._raw_api import c_size_t, c_uint8_ptr, create_string_buffer
    GHASH_C = _ghash_clmul or _ghash_portable
except ImportError:   # another pycryptodome layout: every message takes the AES.new path
    _GHASH = GHASH_C = None

TAG_SIZE = 16
NONCE_SIZE = 12
COMPOSE_MAX = 4096            # bytes: above this, AES.new is as fast (its set-up is amortised)
_COUNTERS = [struct.pack(">I", i) for i in range(1, COMPOSE_MAX // 16 + 3)]   # inc32 suffixes from 1
_LENGTHS = struct.Struct(">QQ")


class Gcm:
    """seal/open for one 32-byte key; raises ValueError on a bad tag."""

    def __init__(self, key: bytes):
        self._key = bytes(key)
        self._ecb = AES.new(self._key, AES.MODE_ECB)
        # the GHASH key H = E(K, 0^128), expanded once (read-only: any thread may use it)
        self._ghash_key = _GHASH(self._ecb.encrypt(bytes(16)), GHASH_C) if _GHASH is not None else None

    def seal(self, nonce: bytes, aad: bytes, plaintext) -> bytearray:
        """ciphertext + 16-byte tag, in one new buffer."""
        size = len(plaintext)
        sealed = bytearray(size + TAG_SIZE)
        if size > COMPOSE_MAX or _GHASH is None:
            cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
            cipher.update(aad)
            with memoryview(sealed) as view:
                cipher.encrypt(plaintext, output=view[:size])
                view[size:] = cipher.digest()
            return sealed
        mask, stream = self._keystream(nonce, size)
        ciphertext = _xor(bytes(plaintext), stream)
        sealed[:size] = ciphertext
        sealed[size:] = _xor(self._ghash(aad, ciphertext), mask)
        return sealed

    def open(self, nonce: bytes, aad: bytes, sealed) -> bytes:
        """The plaintext of ``sealed`` (ciphertext + tag); ValueError if anything
        was altered. A large ``sealed`` that is a bytearray (a received frame's
        own buffer) is decrypted where it lies and becomes the plaintext
        returned, its tag cut off: no new buffer (its content is undefined after
        a ValueError; the caller drops it)."""
        size = len(sealed) - TAG_SIZE
        if size < 0:
            raise ValueError("shorter than its tag")
        if size > COMPOSE_MAX or _GHASH is None:
            return self._open_large(nonce, aad, sealed, size)
        with memoryview(sealed) as view:
            ciphertext, tag = bytes(view[:size]), bytes(view[size:])
        mask, stream = self._keystream(nonce, size)
        if not hmac.compare_digest(_xor(self._ghash(aad, ciphertext), mask), tag):
            raise ValueError("MAC check failed")
        return _xor(ciphertext, stream)

    def _open_large(self, nonce: bytes, aad: bytes, sealed, size: int):
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
        cipher.update(aad)
        with memoryview(sealed) as view:
            if not isinstance(sealed, bytearray):
                return cipher.decrypt_and_verify(view[:size], view[size:])
            tag = bytes(view[size:])
            cipher.decrypt(view[:size], output=view[:size])   # it hashes the ciphertext (GHASH), then decrypts
        cipher.verify(tag)
        del sealed[size:]
        return sealed

    def _keystream(self, nonce: bytes, size: int):
        """E(K, J0) (the tag mask) and the CTR keystream E(K, J0+1) ... for ``size`` bytes."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("GCM here takes 12-byte nonces")
        blocks = 1 + (size + 15) // 16
        out = self._ecb.encrypt(b"".join(nonce + counter for counter in _COUNTERS[:blocks]))
        return out[:16], out[16:16 + size]

    def _ghash(self, aad: bytes, ciphertext: bytes) -> bytes:
        """GHASH_H(A || pad || C || pad || len(A) || len(C)) in one C call, its state a fresh 16 bytes."""
        data = _padded(aad) + _padded(ciphertext) + _LENGTHS.pack(8 * len(aad), 8 * len(ciphertext))
        state = create_string_buffer(16)
        if GHASH_C.ghash(state, c_uint8_ptr(data), c_size_t(len(data)), state, self._ghash_key._exp_key.get()):
            raise ValueError("GHASH failed")
        return state.raw


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def _xor(a: bytes, b: bytes) -> bytes:
    """``a`` XOR ``b`` (the same length, at most COMPOSE_MAX + a block): as
    integers, in the interpreter (no foreign call, the GIL kept)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
