"""check_path: safe relative POSIX paths in NFC; every kind of bad path refused."""

import os
import unicodedata

import pytest
from hypothesis import given, settings, strategies as st

from p2p.history.paths import UnsafePath, check_path, is_internal

EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "400"))


@pytest.mark.parametrize("path", ["a", "a/b/c.txt", "docs/Ünïcode.md", ".hidden", "a/.p2p", "x/events.jsonl",
                                  "con-tent.txt", "COM10", "a..b", "...", "notes.p2p-tmp"])
def test_accepts_ordinary_paths(path):
    assert check_path(path) == path


def test_normalises_to_nfc():
    decomposed = "cafe\u0301/ne\u0301.txt"
    assert check_path(decomposed) == unicodedata.normalize("NFC", decomposed) == "caf\u00e9/n\u00e9.txt"


@pytest.mark.parametrize("path, reason", [
    (None, "string"),
    (b"a", "string"),
    ("", "empty"),
    ("a/" * 2048 + "b", "bytes long"),
    ("/etc/passwd", "absolute"),
    ("a\\b", "backslash"),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("a\x1fb", "control"),
    ("a\x7fb", "control"),
    ("a//b", "segment"),
    ("a/", "segment"),
    ("./a", "segment"),
    ("a/./b", "segment"),
    ("../a", "segment"),
    ("a/../../b", "segment"),
    ("..", "segment"),
    ("a/" + "x" * 256, "longer than 255"),
    ("C:", "drive"),
    ("c:/windows", "drive"),
    ("C:stream", "drive"),
    ("CON", "reserved"),
    ("dir/con.txt", "reserved"),
    ("Aux.tar.gz", "reserved"),
    ("a/nul", "reserved"),
    ("COM1", "reserved"),
    ("lpt9.log", "reserved"),
    ("PRN", "reserved"),
    (".p2p", "internal"),
    (".p2p/blocks/ab/cd", "internal"),
    ("events.jsonl", "internal"),
    ("events.jsonl.torn-1700000000", "internal"),
    (".p2p-tmp-0123456789abcdef", "internal"),
    ("a/b/.p2p-tmp-00000000ffffffff", "internal"),
    (".p2p-folder", "internal"),
    ("a\udcff", "Unicode"),
])
def test_refuses_bad_paths(path, reason):
    with pytest.raises(UnsafePath, match=reason):
        check_path(path)


def test_unsafe_path_is_a_value_error():
    assert issubclass(UnsafePath, ValueError)


def test_segment_limit_counts_utf8_bytes():
    assert check_path("é" * 127)                 # 254 bytes
    with pytest.raises(UnsafePath):
        check_path("é" * 128)                    # 256 bytes


def test_is_internal():
    assert is_internal(".p2p") and is_internal(".p2p/x") and is_internal("events.jsonl")
    assert is_internal("a/.p2p-tmp-0123456789abcdef") and is_internal("events.jsonl.torn-5")
    assert is_internal(".p2p-folder") and not is_internal("a/.p2p-folder")
    # a name the user chose is the user's, even with p2p's prefix: synced, never removed
    assert not is_internal("a/.p2p-tmp-x") and not is_internal(".p2p-tmp-0123456789ABCDEF")
    assert not is_internal(".p2p-tmp-0123456789abcdef0")
    assert not is_internal("a/.p2p") and not is_internal("a/events.jsonl") and not is_internal("shared/x")


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab./\\:\x00\x01\x7f \u0301e")) | st.characters(), max_size=40))
def test_fuzz_check_path_never_returns_an_unsafe_path(text):
    try:
        path = check_path(text)
    except UnsafePath:
        return
    segments = path.split("/")
    assert ".." not in segments and "." not in segments and "" not in segments
    assert not path.startswith("/") and "\\" not in path
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in path)
    assert unicodedata.is_normalized("NFC", path)
    assert not is_internal(path)
