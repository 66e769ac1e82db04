"""AES-256-GCM (NIST SP 800-38D) for one key, with its set-up done once.

``AES.new(key, AES.MODE_GCM, nonce=...)`` expands the AES key three times and
the GHASH key once for every message, in Python: about 120-180 us, then about
290 us for a whole 200-byte frame on this project's 2-core VM, and a fifth of
the time of a 1 MiB block frame. A channel seals every frame of one direction
under one key, so ``Gcm`` keeps, per key, the expanded AES key (one ECB
cipher) and the expanded GHASH key (of H = E(K, 0^128)), and composes each
message from pycryptodome's own C primitives. The tag mask is E(K, J0). A
small message's keystream is the counter blocks J0+1, ... encrypted by that
ECB cipher in the same call, XORed in as Python integers (a foreign call per
XOR cost more, and each releases the GIL, which the hub then waits to get
back from the bulk threads).

A large message (over ``COMPOSE_MAX``) goes through the system's OpenSSL
(libcrypto's EVP AES-256-GCM, the library Python's own hashlib uses) when
it can be loaded: its stitched AES-NI/VAES and carry-less GHASH code seals a
1 MiB block frame in about half the time of pycryptodome's CTR and GHASH
one after the other (``_OpenSsl``: ctypes calls, which release the GIL; a
fresh cipher context per message, so any thread may use it; a received
frame's buffer is decrypted in place). Where libcrypto is missing, a large
message is composed too: a CTR cipher from J0+1 (inc32: a 4-byte counter
after the nonce) written into the output buffer, and pycryptodome's C GHASH
over AAD and ciphertext, chained over the parts in place (no joined copy of
a large ciphertext); a large received frame's ciphertext is then checked
before it is decrypted in its own buffer. Every path gives ``AES.new``'s
bytes: tests/test_gcm.py checks each against it on random inputs, and
tampering. Only 12-byte nonces (J0 = nonce || 0x00000001).
"""

from __future__ import annotations

import ctypes
import hmac
import struct
from typing import Optional

from Crypto.Cipher import AES

from p2p.wire.frame import uninitialized

try:   # pycryptodome's C GHASH (carry-less multiplication when the CPU has it)
    from Crypto.Cipher._mode_gcm import _GHASH, _ghash_clmul, _ghash_portable
    from Crypto.Util._raw_api import backend as _RAW_BACKEND, c_size_t, c_uint8_ptr, create_string_buffer
    GHASH_C = _ghash_clmul or _ghash_portable
except ImportError:   # another pycryptodome layout: every message goes through AES.new (and see _composition_agrees)
    _GHASH = GHASH_C = _RAW_BACKEND = None

TAG_SIZE = 16
NONCE_SIZE = 12
COMPOSE_MAX = 4096            # bytes: up to this, the keystream comes from one ECB call (no CTR object)
_COUNTERS = [struct.pack(">I", i) for i in range(1, COMPOSE_MAX // 16 + 3)]   # inc32 suffixes from 1
_LENGTHS = struct.Struct(">QQ")
# Linux names only: loading an unversioned libcrypto on macOS aborts the process (no exception)
_LIBCRYPTO_NAMES = ("libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so")


class _OpenSsl:
    """AES-256-GCM of one message through libcrypto's EVP interface (OpenSSL 1.1 or 3)."""

    GET_TAG, SET_TAG = 0x10, 0x11   # EVP_CTRL_GCM_GET_TAG, EVP_CTRL_GCM_SET_TAG

    def __init__(self, lib):
        pointer, size, out_len = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)
        lib.EVP_CIPHER_CTX_new.restype = pointer
        lib.EVP_CIPHER_CTX_new.argtypes = ()
        lib.EVP_CIPHER_CTX_free.argtypes = (pointer,)
        lib.EVP_aes_256_gcm.restype = pointer
        lib.EVP_aes_256_gcm.argtypes = ()
        lib.EVP_CIPHER_CTX_ctrl.argtypes = (pointer, size, size, pointer)
        for step in ("Encrypt", "Decrypt"):
            getattr(lib, f"EVP_{step}Init_ex").argtypes = (pointer,) * 5
            getattr(lib, f"EVP_{step}Update").argtypes = (pointer, pointer, out_len, pointer, size)
            getattr(lib, f"EVP_{step}Final_ex").argtypes = (pointer, pointer, out_len)
        self._lib = lib
        self._cipher = lib.EVP_aes_256_gcm()

    def seal_into(self, key: bytes, nonce: bytes, aad: bytes, plaintext, out: memoryview) -> None:
        """Write ciphertext + tag of ``plaintext`` into ``out`` (its size + TAG_SIZE bytes)."""
        size = len(plaintext)
        lib, done = self._lib, ctypes.c_int()
        tag = ctypes.create_string_buffer(TAG_SIZE)
        ctx = self._context(lib.EVP_EncryptInit_ex, key, nonce)
        try:
            if not (lib.EVP_EncryptUpdate(ctx, None, done, aad, len(aad))
                    and lib.EVP_EncryptUpdate(ctx, c_uint8_ptr(out), done, c_uint8_ptr(plaintext), size)
                    and lib.EVP_EncryptFinal_ex(ctx, None, done)
                    and lib.EVP_CIPHER_CTX_ctrl(ctx, self.GET_TAG, TAG_SIZE, tag)):
                raise ValueError("OpenSSL could not seal the message")
        finally:
            lib.EVP_CIPHER_CTX_free(ctx)
        out[size:] = tag.raw

    def open_into(self, key: bytes, nonce: bytes, aad: bytes, sealed: memoryview, out) -> None:
        """Write the plaintext of ``sealed`` (ciphertext + tag) into ``out``
        (which may be ``sealed`` itself: decrypted in place); ValueError if the
        tag does not match (``out`` then holds no plaintext to use)."""
        size = len(sealed) - TAG_SIZE
        lib, done = self._lib, ctypes.c_int()
        tag = ctypes.create_string_buffer(bytes(sealed[size:]), TAG_SIZE)
        ctx = self._context(lib.EVP_DecryptInit_ex, key, nonce)
        try:
            if not (lib.EVP_DecryptUpdate(ctx, None, done, aad, len(aad))
                    and lib.EVP_DecryptUpdate(ctx, c_uint8_ptr(out), done, c_uint8_ptr(sealed), size)
                    and lib.EVP_CIPHER_CTX_ctrl(ctx, self.SET_TAG, TAG_SIZE, tag)):
                raise ValueError("OpenSSL could not open the message")
            if lib.EVP_DecryptFinal_ex(ctx, None, done) != 1:
                raise ValueError("MAC check failed")
        finally:
            lib.EVP_CIPHER_CTX_free(ctx)

    def _context(self, init, key: bytes, nonce: bytes):
        """A new cipher context set up for this key and 12-byte nonce (the caller frees it)."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("GCM here takes 12-byte nonces")
        ctx = self._lib.EVP_CIPHER_CTX_new()
        if not ctx:
            raise MemoryError("OpenSSL could not allocate a cipher context")
        if init(ctx, self._cipher, None, key, nonce) != 1:
            self._lib.EVP_CIPHER_CTX_free(ctx)
            raise ValueError("OpenSSL could not set up AES-256-GCM")
        return ctx


def _load_openssl() -> Optional[_OpenSsl]:
    """libcrypto's AES-256-GCM, or None where it cannot be loaded (or lacks it)."""
    for name in _LIBCRYPTO_NAMES:
        try:
            return _OpenSsl(ctypes.CDLL(name))
        except (OSError, AttributeError):
            continue
    return None


# c_uint8_ptr (a buffer's address, no copy) gives ctypes pointers with pycryptodome's ctypes back end
OPENSSL = _load_openssl() if _RAW_BACKEND == "ctypes" else None
SYSTEM = object()   # Gcm's default: the large messages through OPENSSL where it is in use


class Gcm:
    """seal/open for one 32-byte key; raises ValueError on a bad tag."""

    def __init__(self, key: bytes, native=SYSTEM):
        """``native``: what seals and opens the large messages (``SYSTEM``:
        OPENSSL if it loaded; None: the composed CTR and GHASH; tests choose)."""
        self._key = bytes(key)
        self._native = (OPENSSL if native is SYSTEM else native) if _GHASH is not None else None
        self._ecb = AES.new(self._key, AES.MODE_ECB)
        # the GHASH key H = E(K, 0^128), expanded once (read-only: any thread may use it)
        self._ghash_key = _GHASH(self._ecb.encrypt(bytes(16)), GHASH_C) if _GHASH is not None else None

    @property
    def large_in_openssl(self) -> bool:
        """Whether the large messages go through OpenSSL (a few ms for the largest frame, the GIL released)."""
        return self._native is not None

    def seal(self, nonce: bytes, aad: bytes, plaintext) -> bytearray:
        """ciphertext + 16-byte tag, in one new buffer (not zeroed first:
        every path below writes all of it, or raises and drops it)."""
        size = len(plaintext)
        sealed = uninitialized(size + TAG_SIZE)
        with memoryview(sealed) as view:
            if _GHASH is None:
                cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
                cipher.update(aad)
                cipher.encrypt(plaintext, output=view[:size])
                view[size:] = cipher.digest()
                return sealed
            if size <= COMPOSE_MAX:
                mask, stream = self._keystream(nonce, size)
                view[:size] = _xor(bytes(plaintext), stream)
            elif self._native is not None:
                self._native.seal_into(self._key, nonce, aad, plaintext, view)
                return sealed
            else:
                mask = self._mask(nonce)
                self._ctr(nonce).encrypt(plaintext, output=view[:size])
            view[size:] = _xor(self._ghash(aad, view[:size]), mask)
        return sealed

    def open(self, nonce: bytes, aad: bytes, sealed) -> bytes:
        """The plaintext of ``sealed`` (ciphertext + tag); ValueError if anything
        was altered. A large ``sealed`` that is a bytearray (a received frame's
        own buffer) is decrypted where it lies and becomes the plaintext
        returned, its tag cut off: no new buffer (the composed path checks the
        tag first; OpenSSL checks it last, and a buffer that fails holds no
        plaintext anyone reads: the ValueError ends its use)."""
        size = len(sealed) - TAG_SIZE
        if size < 0:
            raise ValueError("shorter than its tag")
        with memoryview(sealed) as view:
            if _GHASH is None:
                cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
                cipher.update(aad)
                return cipher.decrypt_and_verify(view[:size], view[size:])
            small = size <= COMPOSE_MAX
            if not small and self._native is not None:
                if not isinstance(sealed, bytearray):
                    opened = bytearray(size)
                    self._native.open_into(self._key, nonce, aad, view, opened)
                    return opened
                self._native.open_into(self._key, nonce, aad, view, view[:size])
            else:
                mask, stream = self._keystream(nonce, size) if small else (self._mask(nonce), None)
                if not hmac.compare_digest(_xor(self._ghash(aad, view[:size]), mask), bytes(view[size:])):
                    raise ValueError("MAC check failed")
                if small:
                    return _xor(bytes(view[:size]), stream)
                if not isinstance(sealed, bytearray):
                    return self._ctr(nonce).decrypt(view[:size])
                self._ctr(nonce).decrypt(view[:size], output=view[:size])
        del sealed[size:]
        return sealed

    def _mask(self, nonce: bytes) -> bytes:
        """E(K, J0): what the GHASH is XORed with to make the tag."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("GCM here takes 12-byte nonces")
        return self._ecb.encrypt(nonce + _COUNTERS[0])

    def _ctr(self, nonce: bytes):
        """The CTR cipher of the message's data: counter blocks J0+1, J0+2, ... (inc32)."""
        return AES.new(self._key, AES.MODE_CTR, nonce=nonce, initial_value=2)

    def _keystream(self, nonce: bytes, size: int):
        """E(K, J0) (the tag mask) and the CTR keystream E(K, J0+1) ... for ``size`` bytes."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("GCM here takes 12-byte nonces")
        blocks = 1 + (size + 15) // 16
        out = self._ecb.encrypt(b"".join(nonce + counter for counter in _COUNTERS[:blocks]))
        return out[:16], out[16:16 + size]

    def _ghash(self, aad: bytes, ciphertext: memoryview) -> bytes:
        """GHASH_H(A || pad || C || pad || len(A) || len(C)): one C call for a
        small message; for a large one the ciphertext's whole blocks are
        hashed where they lie, between the padded AAD and the padded tail."""
        size = len(ciphertext)
        whole = size - size % 16
        tail = _padded(bytes(ciphertext[whole:])) + _LENGTHS.pack(8 * len(aad), 8 * size)
        if size <= COMPOSE_MAX:
            parts = (_padded(aad) + bytes(ciphertext[:whole]) + tail,)
        else:
            parts = (_padded(aad), ciphertext[:whole], tail)
        state = create_string_buffer(16)
        for part in parts:
            if len(part) and GHASH_C.ghash(state, c_uint8_ptr(part), c_size_t(len(part)), state,
                                           self._ghash_key._exp_key.get()):
                raise ValueError("GHASH failed")
        return state.raw


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def _xor(a: bytes, b: bytes) -> bytes:
    """``a`` XOR ``b`` (the same length, at most COMPOSE_MAX + a block): as
    integers, in the interpreter (no foreign call, the GIL kept)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _composition_agrees(native: Optional[_OpenSsl] = None) -> bool:
    """Whether the composed messages here are AES.new's, small and large
    (the large ones through ``native``, or composed), and open again. The C
    GHASH is reached through pycryptodome's private layout (``_GHASH``, its
    ``_exp_key``), which a release may change without an import failing, and
    libcrypto through signatures declared here; checked once at import, a
    mismatch sends every message through AES.new (the composed path), or the
    large ones through the composed path (OpenSSL), instead of failing every
    seal."""
    key, nonce, aad = bytes(range(32)), bytes(range(12)), b"probe"
    try:
        gcm = Gcm(key, native)
        for size in (40, COMPOSE_MAX + 40):
            data = bytes(range(256)) * (size // 256) + bytes(size % 256)
            reference = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
            reference.update(aad)
            expected = reference.encrypt(data) + reference.digest()
            if bytes(gcm.seal(nonce, aad, data)) != expected or gcm.open(nonce, aad, bytearray(expected)) != data:
                return False
    except Exception:   # noqa: BLE001 - any failure of the private layout means: do not use it
        return False
    return True


if _GHASH is not None and not _composition_agrees():
    _GHASH = GHASH_C = None
if OPENSSL is not None and (_GHASH is None or not _composition_agrees(OPENSSL)):
    OPENSSL = None
