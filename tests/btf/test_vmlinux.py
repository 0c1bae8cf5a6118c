"""Reading the host's vmlinux BTF, checked against bpftool's raw dump of the same file."""

from __future__ import annotations

import re
import shutil

import pytest

from pybpfguard.bpf import btf
from pybpfguard.bpf.btf import (
    BTF_KIND_ENUM,
    BTF_KIND_ENUM64,
    BTF_KIND_FUNC,
    BTF_KIND_STRUCT,
    BTF_KIND_TYPEDEF,
    BitfieldMemberError,
    MemberNotFoundError,
    Spec,
    TypeNotFoundError,
)
from pybpfguard.bpf.btf import types as t

from .bpftool_raw import render

_MEMBER = re.compile(r"^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)")


def raw_id(raw: dict[int, str], kind: str, name: str) -> int:
    """The lowest id bpftool prints as ``KIND 'name'``."""
    head = f"] {kind} '{name}' "
    return min(tid for tid, text in raw.items() if head in text.split("\n", 1)[0] + " ")


def raw_member_bits(raw: dict[int, str], type_id: int, name: str) -> int | None:
    """Bit offset of member *name* of *type_id*, searching anonymous members, from bpftool's text alone."""
    lines = raw[type_id].split("\n")
    members = [m for m in map(_MEMBER.match, lines[1:]) if m]
    for m in members:
        if m[1] == name:
            return int(m[3])
    for m in members:
        if m[1] == "(anon)" and re.search(r"\] (STRUCT|UNION) ", raw[int(m[2])]):
            inner = raw_member_bits(raw, int(m[2]), name)
            if inner is not None:
                return int(m[3]) + inner
    return None


def test_index_is_built_lazily_and_counts_every_type_bpftool_lists(vmlinux_raw: dict[int, str]) -> None:
    spec = Spec.load("/sys/kernel/btf/vmlinux")
    assert spec._offsets is None  # nothing walked before the first lookup
    assert spec.type_count == max(vmlinux_raw) + 1 == len(vmlinux_raw) + 1


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("STRUCT", "task_struct"),
        ("STRUCT", "file"),
        ("STRUCT", "path"),
        ("STRUCT", "dentry"),
        ("STRUCT", "linux_binprm"),
        ("STRUCT", "sock"),
        ("STRUCT", "sock_common"),
        ("ENUM", "bpf_map_type"),
        ("ENUM", "rpm_status"),  # signed
        ("TYPEDEF", "btf_trace_sched_process_exec"),
        ("FUNC", "bpf_lsm_file_open"),
    ],
)
def test_sample_type_decodes_as_bpftool_prints_it(
    vmlinux: Spec, vmlinux_raw: dict[int, str], kind: str, name: str
) -> None:
    type_id = vmlinux.find_id(btf.BtfKind[f"BTF_KIND_{kind}"], name)
    assert type_id == raw_id(vmlinux_raw, kind, name)
    assert render(vmlinux, vmlinux.type_by_id(type_id)) == vmlinux_raw[type_id]


def test_func_proto_of_bpf_lsm_file_open_matches_bpftool(vmlinux: Spec, vmlinux_raw: dict[int, str]) -> None:
    proto = vmlinux.func_proto("bpf_lsm_file_open")
    assert render(vmlinux, proto) == vmlinux_raw[proto.id]
    (param,) = proto.params
    assert param.name == "file"
    pointee = vmlinux.resolve(vmlinux.type_by_id(param.type_id).type_id)
    assert (pointee.kind, pointee.name) == (BTF_KIND_STRUCT, "file")


@pytest.mark.slow
def test_every_vmlinux_type_decodes_as_bpftool_prints_it(vmlinux: Spec, vmlinux_raw: dict[int, str]) -> None:
    kinds_seen = set()
    for typ in vmlinux:
        kinds_seen.add(typ.kind)
        assert render(vmlinux, typ) == vmlinux_raw[typ.id]
    assert len(vmlinux_raw) == vmlinux.type_count - 1
    # every kind bpftool lists in this kernel's BTF, and no other
    bpftool_kinds = {text.split(" ", 2)[1] for text in vmlinux_raw.values()}
    assert {kind.name.removeprefix("BTF_KIND_") for kind in kinds_seen} == bpftool_kinds


def test_enum64_values_are_64_bit_and_unsigned(vmlinux: Spec, vmlinux_raw: dict[int, str]) -> None:
    ids = [tid for tid, text in vmlinux_raw.items() if "] ENUM64 " in text.split("\n", 1)[0]]
    assert ids, "this kernel has ENUM64 types"
    big = [v for tid in ids for v in vmlinux.type_by_id(tid).values if v.value >= 1 << 32]
    assert big, "some ENUM64 value needs more than 32 bits"
    typ = vmlinux.type_by_id(ids[0])
    assert isinstance(typ, t.Enum64) and typ.kind == BTF_KIND_ENUM64 and not typ.values_may_be_truncated


def test_signed_enum_keeps_negative_values(vmlinux: Spec) -> None:
    typ = vmlinux.find(BTF_KIND_ENUM, "rpm_status")
    assert typ.signed and dict((v.name, v.value) for v in typ.values)["RPM_INVALID"] == -1


def test_find_of_missing_name_raises_type_not_found_naming_kind_and_name(vmlinux: Spec) -> None:
    with pytest.raises(TypeNotFoundError, match=r"no BTF FUNC named 'bpf_lsm_no_such_hook'") as err:
        vmlinux.find(BTF_KIND_FUNC, "bpf_lsm_no_such_hook")
    assert isinstance(err.value, KeyError)


def test_find_ids_lists_every_same_named_type_and_find_takes_the_lowest(
    vmlinux: Spec, vmlinux_raw: dict[int, str]
) -> None:
    by_name: dict[tuple[str, str], list[int]] = {}
    for tid, text in vmlinux_raw.items():
        m = re.match(r"\[\d+\] (\w+) '([^']+)'", text)
        if m and m[2] != "(anon)":
            by_name.setdefault((m[1], m[2]), []).append(tid)
    dups = [(k, ids) for k, ids in by_name.items() if len(ids) > 1]
    assert dups, "vmlinux has some kind+name pair more than once"
    for (kind, name), ids in dups[:20]:
        assert vmlinux.find_ids(btf.BtfKind[f"BTF_KIND_{kind}"], name) == ids
        assert vmlinux.find_id(btf.BtfKind[f"BTF_KIND_{kind}"], name) == ids[0]


@pytest.mark.parametrize(
    ("struct", "member"),
    [
        ("task_struct", "real_parent"),
        ("task_struct", "tgid"),
        ("task_struct", "pid"),
        ("task_struct", "mm"),
        ("page", "lru"),  # page -> anonymous union -> anonymous struct -> lru
        ("page", "_mapcount"),
        ("sock", "skc_family"),  # sock -> __sk_common is named; skc_family is not found through it
        ("sock_common", "skc_family"),  # inside an anonymous union/struct of sock_common
        ("linux_binprm", "file"),
        ("dentry", "d_name"),
    ],
)
def test_member_offset_through_anonymous_structs_matches_bpftool(
    vmlinux: Spec, vmlinux_raw: dict[int, str], struct: str, member: str
) -> None:
    expected_bits = raw_member_bits(vmlinux_raw, raw_id(vmlinux_raw, "STRUCT", struct), member)
    if expected_bits is None:
        with pytest.raises(MemberNotFoundError, match=member):
            vmlinux.member_offset(struct, member)
    else:
        assert vmlinux.member_offset(struct, member) * 8 == expected_bits


def test_nested_path_adds_offsets_of_each_embedded_struct(vmlinux: Spec, vmlinux_raw: dict[int, str]) -> None:
    f_path = raw_member_bits(vmlinux_raw, raw_id(vmlinux_raw, "STRUCT", "file"), "f_path")
    dentry = raw_member_bits(vmlinux_raw, raw_id(vmlinux_raw, "STRUCT", "path"), "dentry")
    assert vmlinux.member_offset("file", "f_path.dentry") * 8 == f_path + dentry
    info = vmlinux.member("file", "f_path.dentry")
    assert info.size == 8 and isinstance(vmlinux.type_by_id(info.type_id), t.Ptr)
    assert vmlinux.member_offset("sock", "__sk_common.skc_family") == vmlinux.member_offset("sock_common", "skc_family")


def test_array_index_in_path_moves_by_element_size(vmlinux: Spec) -> None:
    base = vmlinux.member_offset("task_struct", "comm")
    assert vmlinux.member_offset("task_struct", "comm[5]") == base + 5
    with pytest.raises(MemberNotFoundError, match="index 16 past 16 elements"):
        vmlinux.member("task_struct", "comm[16]")


def test_bitfield_member_reports_bits_and_refuses_a_byte_offset(vmlinux: Spec, vmlinux_raw: dict[int, str]) -> None:
    info = vmlinux.member("task_struct", "in_execve")
    line = next(x for x in vmlinux_raw[raw_id(vmlinux_raw, "STRUCT", "task_struct")].split("\n") if "'in_execve'" in x)
    assert f"bits_offset={info.bit_offset} bitfield_size={info.bitfield_size}" in line
    with pytest.raises(BitfieldMemberError, match="in_execve is a bitfield"):
        vmlinux.member_offset("task_struct", "in_execve")


def test_path_through_a_pointer_is_refused_naming_where_it_stopped(vmlinux: Spec) -> None:
    with pytest.raises(MemberNotFoundError, match="real_parent is a pointer: offsets do not follow pointers"):
        vmlinux.member("task_struct", "real_parent.pid")
    with pytest.raises(MemberNotFoundError, match="struct task_struct has no member 'no_such'"):
        vmlinux.member("task_struct", "no_such")


def test_resolve_and_sizeof_follow_typedef_and_const_chains(vmlinux: Spec) -> None:
    u32 = vmlinux.find_id(BTF_KIND_TYPEDEF, "u32")
    assert isinstance(vmlinux.resolve(u32), t.Int) and vmlinux.sizeof(u32) == 4
    assert vmlinux.sizeof(vmlinux.find_id(BTF_KIND_STRUCT, "path")) == 16
    comm = vmlinux.member("task_struct", "comm")
    assert comm.size == 16


def test_lsm_attach_id_is_the_bpf_lsm_func(vmlinux: Spec, vmlinux_raw: dict[int, str]) -> None:
    type_id = vmlinux.attach_btf_id_for("lsm", "file_open")
    assert vmlinux_raw[type_id].startswith(f"[{type_id}] FUNC 'bpf_lsm_file_open' ")


def test_tp_btf_attach_id_is_the_btf_trace_typedef_of_a_pointer_to_the_proto(vmlinux: Spec) -> None:
    type_id = vmlinux.attach_btf_id_for("tp_btf", "sched_process_exec")
    typedef = vmlinux.type_by_id(type_id)
    assert isinstance(typedef, t.Typedef) and typedef.name == "btf_trace_sched_process_exec"
    proto = btf.attach_proto(vmlinux, "tp_btf", "sched_process_exec")
    # (void *__data, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
    names = [vmlinux.resolve(vmlinux.type_by_id(p.type_id).type_id).name for p in (proto.params[1], proto.params[3])]
    assert names == ["task_struct", "linux_binprm"] and len(proto.params) == 4
    with pytest.raises(TypeNotFoundError, match="btf_trace_no_such_tracepoint"):
        vmlinux.attach_btf_id_for("tp_btf", "no_such_tracepoint")
    with pytest.raises(ValueError):
        vmlinux.attach_btf_id_for("kprobe", "x")


def test_load_vmlinux_reads_the_file_named_by_pybpfguard_btf_path(tmp_path, monkeypatch) -> None:
    copy = tmp_path / "vmlinux.btf"
    shutil.copyfile("/sys/kernel/btf/vmlinux", copy)
    monkeypatch.setenv("PYBPFGUARD_BTF_PATH", str(copy))
    spec = btf.load_vmlinux()
    assert spec.source == str(copy) and btf.load_vmlinux() is spec
    assert spec.find_id(BTF_KIND_FUNC, "bpf_lsm_file_open") == Spec.load(copy).find_id(
        BTF_KIND_FUNC, "bpf_lsm_file_open"
    )
