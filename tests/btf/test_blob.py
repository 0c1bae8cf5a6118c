"""Hand-made BTF blobs: the kinds vmlinux may lack, malformed input, split BTF (LOADER.md cases 6 and 7)."""

from __future__ import annotations

import pickle

import pytest

from pybpfguard.bpf.btf import (
    BTF_KIND_ENUM,
    BTF_KIND_ENUM64,
    BTF_KIND_STRUCT,
    BTF_KIND_TYPEDEF,
    BTFFormatError,
    BtfKind,
    Spec,
    TypeNotFoundError,
    UnknownKindError,
)
from pybpfguard.bpf.btf import types as t

from .conftest import raw_blob, record

K = BtfKind


def strtab(*names: str) -> tuple[bytes, dict[str, int]]:
    data, offs = b"\0", {}
    for name in names:
        offs[name] = len(data)
        data += name.encode() + b"\0"
    return data, offs


def test_kinds_16_to_19_and_the_rest_decode_from_a_hand_made_blob() -> None:
    strings, o = strtab("int", "double", "tag", "rcu", "e64", "A", "B", "s", "x", "fwdu", "v", ".data", "f")
    records = [
        record(o["int"], K.BTF_KIND_INT, 0, 4, (1 << 24) | 32),  # 1: int (signed)
        record(o["double"], K.BTF_KIND_FLOAT, 0, 8),  # 2
        record(o["s"], K.BTF_KIND_STRUCT, 2, 8, o["x"], 1, 0, o["f"], 1, (3 << 24) | 35, kind_flag=True),  # 3
        record(o["tag"], K.BTF_KIND_DECL_TAG, 0, 3, 1),  # 4: tag on member 1 of s
        record(o["tag"], K.BTF_KIND_DECL_TAG, 0, 3, 0xFFFFFFFF),  # 5: tag on s itself (component_idx -1)
        record(o["rcu"], K.BTF_KIND_TYPE_TAG, 0, 3),  # 6
        record(0, K.BTF_KIND_PTR, 0, 6),  # 7
        record(o["e64"], K.BTF_KIND_ENUM64, 2, 8, o["A"], 0, 1 << 8, o["B"], 0xFFFFFFFE, 0xFFFFFFFF, kind_flag=True),
        record(0, K.BTF_KIND_FUNC_PROTO, 2, 1, o["x"], 1, 0, 0),  # 9: int (int x, ...)
        record(o["fwdu"], K.BTF_KIND_FWD, 0, 0, kind_flag=True),  # 10
        record(o["v"], K.BTF_KIND_VAR, 0, 1, 1),  # 11: global int v
        record(o[".data"], K.BTF_KIND_DATASEC, 1, 4, 11, 0, 4),  # 12
        record(0, K.BTF_KIND_RESTRICT, 0, 7),  # 13
        record(0, K.BTF_KIND_VOLATILE, 0, 1),  # 14
        record(0, K.BTF_KIND_ARRAY, 0, 0, 1, 1, 16),  # 15: int[16]
    ]
    spec = Spec(raw_blob(records, strings))
    assert spec.type_by_id(2) == t.Float(2, "double", 8)
    s = spec.type_by_id(3)
    assert s.members[1] == t.Member("f", 1, 35, 3)  # kind_flag: bitfield_size << 24 | bit_offset
    assert spec.member("s", "f").bitfield_size == 3 and spec.member("s", "f").bit_offset == 35
    assert spec.type_by_id(4) == t.DeclTag(4, "tag", 3, 1)
    assert spec.type_by_id(5).component_idx == -1
    assert spec.type_by_id(6) == t.TypeTag(6, "rcu", 3)
    e64 = spec.find(BTF_KIND_ENUM64, "e64")
    assert e64.signed and [(v.name, v.value) for v in e64.values] == [("A", 1 << 40), ("B", -2)]
    proto = spec.type_by_id(9)
    assert proto.variadic and proto.params == (t.Param("x", 1),)
    assert spec.type_by_id(10).is_union
    assert spec.type_by_id(12).vars == (t.VarSecinfo(11, 0, 4),)
    assert spec.resolve(13).kind == K.BTF_KIND_PTR and spec.resolve(14) == spec.type_by_id(1)
    assert spec.sizeof(15) == 64
    assert pickle.loads(pickle.dumps(e64)) == e64


def test_unsigned_enum64_entry_is_twelve_bytes_and_the_next_record_still_parses() -> None:
    strings, o = strtab("e", "A", "B", "after")
    records = [
        record(o["e"], K.BTF_KIND_ENUM64, 2, 8, o["A"], 0xFFFFFFFF, 0xFFFFFFFF, o["B"], 5, 0),
        record(o["after"], K.BTF_KIND_TYPEDEF, 0, 1),
    ]
    spec = Spec(raw_blob(records, strings))
    assert [v.value for v in spec.type_by_id(1).values] == [(1 << 64) - 1, 5]
    assert spec.find_id(BTF_KIND_TYPEDEF, "after") == 2


def test_eight_byte_enum_of_old_pahole_is_flagged_as_possibly_truncated() -> None:
    strings, o = strtab("big", "small", "A")
    records = [
        record(o["big"], K.BTF_KIND_ENUM, 1, 8, o["A"], 0x80000000),
        record(o["small"], K.BTF_KIND_ENUM, 1, 4, o["A"], 7),
    ]
    spec = Spec(raw_blob(records, strings))
    big = spec.find(BTF_KIND_ENUM, "big")
    assert big.values_may_be_truncated and big.values[0].value == 0x80000000
    assert not spec.find(BTF_KIND_ENUM, "small").values_may_be_truncated


def test_unknown_kind_fails_naming_the_kind_and_the_type_id() -> None:
    strings, o = strtab("int")
    records = [record(o["int"], K.BTF_KIND_INT, 0, 4, 32), record(0, K.BTF_KIND_PTR, 0, 1), record(0, 20, 0, 0)]
    spec = Spec(raw_blob(records, strings))
    with pytest.raises(UnknownKindError, match=r"type id 3: unknown kind 20") as err:
        spec.type_by_id(1)
    assert (err.value.kind, err.value.type_id) == (20, 3)
    assert pickle.loads(pickle.dumps(err.value)).type_id == 3


def test_record_running_past_the_type_section_is_a_format_error() -> None:
    strings, o = strtab("s")
    blob = raw_blob([record(o["s"], K.BTF_KIND_STRUCT, 5, 8, 0, 1, 0)], strings)
    with pytest.raises(BTFFormatError, match="type id 1"):
        Spec(blob).type_by_id(1)


@pytest.mark.parametrize(
    ("blob", "problem"),
    [
        (b"\xeb\x9f\x01\x00" + bytes(20), "big-endian BTF is not supported"),
        (b"\x00\x00" + bytes(22), "bad magic"),
        (b"\x9f\xeb", "shorter than the 24-byte header"),
    ],
)
def test_bad_header_is_refused_with_the_problem(blob: bytes, problem: str) -> None:
    with pytest.raises(BTFFormatError, match=problem):
        Spec(blob, source="x.btf")


def test_split_blob_continues_ids_and_string_offsets_of_its_base() -> None:
    base_strings, bo = strtab("int", "shared")
    base = Spec(raw_blob([record(bo["int"], K.BTF_KIND_INT, 0, 4, 32)], base_strings))
    # Split strings start at base.strings_size; a split record may also name a base string.
    split_strings = b"mod_struct\0"
    mod_off = base.strings_size
    split = Spec(
        raw_blob(
            [
                record(mod_off, K.BTF_KIND_STRUCT, 1, 4, bo["shared"], 1, 0),  # id 2, member of base int
                record(bo["shared"], K.BTF_KIND_TYPEDEF, 0, 2),  # id 3, named by a base string
            ],
            split_strings,
        ),
        base=base,
    )
    assert split.first_id == 2 and split.type_count == 4
    assert split.find_id(BTF_KIND_STRUCT, "mod_struct") == 2
    assert split.find_id(BTF_KIND_TYPEDEF, "shared") == 3
    assert split.type_by_id(1) == base.type_by_id(1)
    assert split.member_offset("mod_struct", "shared") == 0 and split.sizeof(3) == 4
    assert [typ.id for typ in split] == [2, 3]
    with pytest.raises(TypeNotFoundError):
        split.type_by_id(4)


def test_empty_file_is_a_format_error_naming_the_file(tmp_path) -> None:
    empty = tmp_path / "empty.btf"
    empty.write_bytes(b"")
    with pytest.raises(BTFFormatError, match=f"{empty}: 0 bytes, shorter than the 24-byte header"):
        Spec.load(empty)
