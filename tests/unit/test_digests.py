"""Identity digests: the C BLAKE2b of streams/_digests.c gives hashlib's answer, byte for byte."""

from __future__ import annotations

import hashlib
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import events, native
from streams.events import digest64, event_identity, py_digest64

PURE = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"


def built():  # type: ignore[no-untyped-def]
    try:
        from streams import _digests
    except ImportError:
        return None
    return _digests


C = built()
needs_c = pytest.mark.skipif(C is None, reason="streams/_digests.c is not built (pure install)")


def truth(data: bytes) -> int:
    # The definition journaled identities depend on, straight from hashlib.
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") or 1


# Lengths around BLAKE2b's 128-byte blocks: empty, one block exactly, one byte over.
texts = st.one_of(
    st.text(max_size=300),
    st.integers(min_value=0, max_value=300).map(lambda n: "x" * n),
    st.sampled_from(["", "a" * 127, "a" * 128, "a" * 129, "é" * 64, "丁" * 43, "\x00"]),
)


@needs_c
@settings(max_examples=1500, deadline=None)
@given(texts)
def test_the_c_digest_is_hashlibs(text: str) -> None:
    assert C.digest64(text) == truth(text.encode())


@needs_c
@settings(max_examples=800, deadline=None)
@given(texts, texts)
def test_the_c_identity_digests_source_nul_id(source: str, id: str) -> None:
    assert C.identity(source, id) == truth(source.encode() + b"\x00" + id.encode())


def test_known_digests() -> None:
    # Fixed values: a change of algorithm would orphan every journaled identity.
    assert py_digest64("") == digest64("") == 0xE4A6A0577479B2B4
    assert py_digest64("jinshui") == digest64("jinshui") == 0x4640413E373B55FA
    assert event_identity("sim://incidents", "c-1") == truth(b"sim://incidents\x00c-1")
    assert event_identity("源", "编号") == truth("源\x00编号".encode())


@needs_c
def test_a_digest_leaves_no_utf8_copy_on_the_string() -> None:
    # Subjects are kept for weeks as keys of a district's state: a UTF-8 copy cached on
    # each (what PyUnicode_AsUTF8 does) would grow every non-ASCII one. getsizeof counts it.
    subject = "".join(["隐患", "编号", str(12345)])  # made at run time, not a shared constant
    before = sys.getsizeof(subject)
    C.digest64(subject)
    C.identity(subject, subject)
    assert sys.getsizeof(subject) == before


@needs_c
def test_bad_input_raises_as_hashlib_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        C.digest64("\ud800")  # a lone surrogate has no UTF-8, as for str.encode
    with pytest.raises(UnicodeEncodeError):
        py_digest64("\ud800")
    with pytest.raises(TypeError):
        C.digest64(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        C.identity("only one")  # type: ignore[call-arg]


def test_the_c_digest_is_the_one_in_use_where_it_is_built() -> None:
    if PURE or native.running_source():
        assert events._C_DIGEST64 is None and events._C_IDENTITY is None
        return
    assert C is not None, "streams/_digests.c is not built: run `make install`"
    assert events._C_DIGEST64 is C.digest64 and events._C_IDENTITY is C.identity
