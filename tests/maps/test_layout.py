"""Layouts: C offsets (ctypes is the oracle), exact round trips (hypothesis), byte order, and loud limits."""

from __future__ import annotations

import ctypes
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpfguard.bpf.layout import Layout, LayoutError, Scalar

INODE_KEY = Layout("inode_key", [("ino", "u64"), ("dev", "u32"), ("pad", "u32")])

_CTYPES = {
    "u8": ctypes.c_uint8,
    "u16": ctypes.c_uint16,
    "u32": ctypes.c_uint32,
    "u64": ctypes.c_uint64,
    "s8": ctypes.c_int8,
    "s16": ctypes.c_int16,
    "s32": ctypes.c_int32,
    "s64": ctypes.c_int64,
    "be16": ctypes.c_uint16,
    "be32": ctypes.c_uint32,
    "be64": ctypes.c_uint64,
}
_BITS = {"8": 8, "16": 16, "32": 32, "64": 64}


def _ctype(ftype: str | Layout) -> Any:
    """The ctypes equivalent of a field type: clang/gcc's C layout as the offset oracle."""
    if isinstance(ftype, Layout):
        return type(ftype.name, (ctypes.Structure,), {"_fields_": [(f.name, _ctype(f.type)) for f in ftype.fields]})
    if "[" in ftype:
        elem, n = ftype[:-1].split("[")
        return (ctypes.c_char if elem == "char" else _CTYPES[elem]) * int(n)
    return _CTYPES[ftype]


scalar_types = st.sampled_from(sorted(_CTYPES))
array_types = st.tuples(st.sampled_from(["char", "u8", "u16", "u32", "be32", "s64"]), st.integers(1, 20)).map(
    lambda t: f"{t[0]}[{t[1]}]"
)
flat_types = st.one_of(scalar_types, array_types)


@st.composite
def layouts(draw: Any, depth: int = 1) -> Layout:
    kinds = flat_types if depth == 0 else st.one_of(flat_types, layouts(depth=depth - 1))
    types = draw(st.lists(kinds, min_size=1, max_size=6))
    return Layout(f"l{depth}_{draw(st.integers(0, 999))}", [(f"f{i}", t) for i, t in enumerate(types)])


def _value_of(draw: Any, ftype: str | Layout) -> Any:
    if isinstance(ftype, Layout):
        return ftype.value(**{f.name: _value_of(draw, f.type) for f in ftype.fields})
    if "[" in ftype:
        elem, n = ftype[:-1].split("[")
        count = int(n)
        if elem == "char":
            return draw(st.binary(max_size=count).map(lambda b: b.replace(b"\0", b"x")))
        if elem == "u8":
            return draw(st.binary(min_size=count, max_size=count))
        return tuple(_value_of(draw, elem) for _ in range(count))
    bits = _BITS[ftype.lstrip("usbe")]
    if ftype.startswith("s"):
        return draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
    return draw(st.integers(0, (1 << bits) - 1))


@st.composite
def layout_and_value(draw: Any) -> tuple[Layout, Any]:
    layout = draw(layouts())
    return layout, layout.value(**{f.name: _value_of(draw, f.type) for f in layout.fields})


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_offsets_and_size_match_the_c_compilers_layout(layout):
    oracle = _ctype(layout)
    assert layout.size == ctypes.sizeof(oracle)
    assert layout.align == ctypes.alignment(oracle)
    for f in layout.fields:
        assert layout.offset(f.name) == getattr(oracle, f.name).offset, f.name


@settings(max_examples=300, deadline=None)
@given(layout_and_value())
def test_pack_then_unpack_returns_the_same_value(case):
    layout, value = case
    raw = layout.pack(value)
    assert len(raw) == layout.size
    assert layout.unpack(raw) == value
    buf = bytearray(layout.size + 3)
    layout.pack_into(buf, 3, value)
    assert layout.unpack_from(buf, 3) == value
    many = layout.pack_many([value, value])
    assert many == raw * 2 and layout.unpack_many(many, 2) == [value, value]


def test_inode_key_is_16_bytes_with_dev_at_8_as_reference_6_5_says():
    assert (INODE_KEY.size, INODE_KEY.offset("ino"), INODE_KEY.offset("dev"), INODE_KEY.offset("pad")) == (16, 0, 8, 12)
    raw = INODE_KEY.pack(ino=5, dev=(259 << 20) | 2)
    assert raw == (5).to_bytes(8, "little") + (271581186).to_bytes(4, "little") + bytes(4)


def test_reference_6_5_agent_keys_have_their_documented_sizes():
    ip_port_v4 = Layout("k", [("addr", "be32"), ("port", "u16"), ("proto", "u8"), ("pad", "u8")])
    ip_port_v6 = Layout("k", [("addr", "u8[16]"), ("port", "u16"), ("proto", "u8"), ("pad", "u8")])
    cg_inode = Layout("k", [("cgid", "u64"), ("inode", INODE_KEY)])
    cg_port = Layout("k", [("cgid", "u64"), ("port", "u16"), ("proto", "u8"), ("dir", "u8"), ("pad", "u32")])
    signal_value = Layout("v", [("window_start_ns", "u64"), ("strikes", "u32")])
    lpm_v6 = Layout("k", [("prefixlen", "u32"), ("addr", "u8[16]")])
    assert [x.size for x in (ip_port_v4, ip_port_v6, cg_inode, cg_port, signal_value, lpm_v6)] == [
        8,
        20,
        24,
        16,
        16,
        20,
    ]
    assert cg_inode.offset("inode.dev") == 16


def test_be32_field_is_network_byte_order():
    key = Layout("lpm_v4", [("prefixlen", "u32"), ("addr", "be32")])
    raw = key.pack(prefixlen=24, addr=0x7F000001)
    assert raw[4:] == socket.inet_aton("127.0.0.1")
    assert key.unpack(raw).addr == 0x7F000001


def test_omitted_fields_are_zero_and_values_are_hashable():
    v = INODE_KEY.value(ino=1)
    assert (v.dev, v.pad) == (0, 0)
    assert {v: 1}[INODE_KEY.value(ino=1)] == 1


@pytest.mark.parametrize(
    ("layout", "fields", "match"),
    [
        (INODE_KEY, {"dev": 1 << 32}, r"field dev: 4294967296 is not a u32"),
        (INODE_KEY, {"ino": -1}, r"field ino: -1 is not a u64"),
        (Layout("comm", [("comm", "char[16]")]), {"comm": b"x" * 17}, r"17 bytes, want at most 16"),
        (Layout("sha", [("digest", "u8[32]")]), {"digest": b"x" * 31}, r"31 bytes, want exactly 32"),
        (INODE_KEY, {"inode": 1}, r"no field 'inode'"),
    ],
)
def test_values_that_do_not_fit_raise_naming_layout_field_and_limit(layout, fields, match):
    with pytest.raises(LayoutError, match=match):
        layout.pack(**fields)


def test_pack_many_names_the_field_of_a_value_that_does_not_fit():
    with pytest.raises(LayoutError, match="field dev: -3 is not a u32"):
        INODE_KEY.pack_many([INODE_KEY.value(ino=1), INODE_KEY.value(dev=-3)])
    with pytest.raises(LayoutError, match="-1 is not a u16"):
        Scalar("u16").pack_many([1, -1])


def test_declaration_errors_name_the_layout_and_field():
    with pytest.raises(LayoutError, match="layout bad, field x: unknown type 'u12'"):
        Layout("bad", [("x", "u12")])
    with pytest.raises(LayoutError, match="duplicate field 'a'"):
        Layout("bad", [("a", "u8"), ("a", "u8")])


def test_scalar_packs_little_and_big_endian_ints():
    assert Scalar("u32").pack(1) == b"\x01\0\0\0"
    assert Scalar("be16").pack(80) == b"\0\x50"
    assert Scalar("s64").unpack(Scalar("s64").pack(-5)) == -5
    with pytest.raises(LayoutError, match="not a u8"):
        Scalar("u8").pack(256)
