"""CO-RE relocations of a clang-built object resolved against this kernel's BTF (pybpfguard.bpf.elf.core).

``data/core_reads.c`` declares flavoured subsets of kernel types (``task_struct___v2``, ``sk_buff___local``)
with ``preserve_access_index`` and uses every relocation kind. It is compiled at test time with
``clang-19 -target bpf -g -O2``; the test reads the object's ``.BTF`` and ``.BTF.ext`` core relocation
records with pyelftools (a minimal reader below; the ELF loader has the real one) and applies them to
/sys/kernel/btf/vmlinux. The oracle for every value is the kernel's BTF read by name with the library's
reader (``Spec.member``, ``sizeof``, ``find_id``), never a constant; one offset is also checked against
``bpftool btf dump``.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpfguard.bpf.asm import opcodes as op
from pybpfguard.bpf.asm.disasm import decode
from pybpfguard.bpf.asm.insn import Insn
from pybpfguard.bpf.btf import BTF_KIND_ENUM, BTF_KIND_STRUCT, Spec
from pybpfguard.bpf.btf.writer import BTFBuilder
from pybpfguard.bpf.elf.core import (
    POISON_HELPER_ID,
    CoreRelo,
    CoreReloError,
    CoreReloKind,
    apply_core_relos,
    describe,
    essential_name,
)
from pybpfguard.bpf.program import Program, ProgramSpec
from pybpfguard.bpf.types import ProgType

CLANG = "clang-19"
SOURCE = Path(__file__).parent / "data" / "core_reads.c"
VMLINUX = "/sys/kernel/btf/vmlinux"
K = CoreReloKind
READS = "tp_btf/sched_process_exec"  # the section of core_reads.c's exec tracer
_EXT_HEADER = struct.Struct("<HBBIIIIIII")  # struct btf_ext_header with the core_relo_off/len fields


def read_core_relos(data: bytes, strings: Spec) -> dict[str, list[CoreRelo]]:
    """``{section name: relocations}`` from a ``.BTF.ext`` blob (Documentation/bpf/llvm_reloc.rst and
    btf.rst section 4.2: header, then per section ``sec_name_off, num_info`` and ``bpf_core_relo``
    records ``insn_off, type_id, access_str_off, kind``); names are in the ``.BTF`` string section."""
    _magic, _ver, _flags, hdr_len, *_, core_off, core_len = _EXT_HEADER.unpack_from(data)
    pos, end = hdr_len + core_off, hdr_len + core_off + core_len
    (rec_size,) = struct.unpack_from("<I", data, pos)
    pos += 4
    out: dict[str, list[CoreRelo]] = {}
    while pos < end:
        sec_off, count = struct.unpack_from("<II", data, pos)
        pos += 8
        relos = out.setdefault(strings.name_of(sec_off), [])
        for _ in range(count):
            insn_off, type_id, access_off, kind = struct.unpack_from("<IIII", data, pos)
            relos.append(CoreRelo(insn_off // 8, type_id, strings.name_of(access_off), kind))
            pos += rec_size
    return out


class Obj:
    """The compiled object: its local BTF, and per section the decoded instructions and relocations."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.local = Spec(elf.get_section_by_name(".BTF").data(), source=str(path))
            self.relos = read_core_relos(elf.get_section_by_name(".BTF.ext").data(), self.local)
            self.insns = {name: decode(elf.get_section_by_name(name).data()) for name in self.relos}


@pytest.fixture(scope="module")
def obj(tmp_path_factory: pytest.TempPathFactory) -> Obj:
    if shutil.which(CLANG) is None:
        pytest.skip(f"{CLANG} not installed (apt-get install clang-19)")
    out = tmp_path_factory.mktemp("core") / "core_reads.o"
    run = subprocess.run(
        [CLANG, "-target", "bpf", "-g", "-O2", "-c", str(SOURCE), "-o", str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return Obj(out)


@pytest.fixture(scope="module")
def kernel_btf() -> Spec:
    if not os.path.exists(VMLINUX):
        pytest.skip("no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF unset)")
    return Spec.load(VMLINUX)


def slot_map(insns: list[Insn]) -> dict[int, Insn]:
    out, slot = {}, 0
    for insn in insns:
        out[slot] = insn
        slot += insn.slots
    return out


@pytest.fixture(scope="module")
def patched(obj: Obj, kernel_btf: Spec) -> dict[str, dict[int, Insn]]:
    """``{section: {slot: patched instruction}}``, one candidate cache for the whole object."""
    cache: dict[int, list[int]] = {}
    out = {}
    for name, relos in obj.relos.items():
        new = apply_core_relos(obj.insns[name], relos, obj.local, kernel_btf, candidates=cache)
        assert sum(i.slots for i in new) == sum(i.slots for i in obj.insns[name])  # slot indexes are kept
        out[name] = slot_map(new)
    return out


def offset_relo(obj: Obj, suffix: str) -> CoreRelo:
    """The byte-offset relocation of the exec tracer whose field path ends with *suffix*."""
    (relo,) = [r for r, what in relos_of(obj, READS, K.BPF_CORE_FIELD_BYTE_OFFSET) if what.endswith(suffix)]
    return relo


def relos_of(obj: Obj, section: str, kind: CoreReloKind) -> list[tuple[CoreRelo, str]]:
    return [(r, describe(r, obj.local)) for r in obj.relos[section] if r.kind == kind]


def kernel_path(what: str) -> tuple[str, str]:
    """``task_struct___v2.comm[3]`` -> ``("task_struct", "comm[3]")``: the kernel's type and member path
    (``task_struct___v2[1].pid`` -> ``("task_struct[1]", "pid")``)."""
    type_name, _, path = what.partition(".")
    root, bracket, index = type_name.partition("[")
    return essential_name(root) + bracket + index, path


def value(insn: Insn) -> int:
    """The relocated value of *insn*: off of a load/store, imm of an ALU immediate or ld_imm64."""
    return insn.off if insn.cls in (op.BPF_LDX, op.BPF_ST, op.BPF_STX) else insn.imm


def is_poison(insn: Insn) -> bool:
    return insn.code == op.BPF_JMP | op.BPF_CALL and insn.src_reg == 0 and insn.imm == POISON_HELPER_ID


def test_field_offsets_are_the_kernels(obj: Obj, patched: dict[str, dict[int, Insn]], kernel_btf: Spec) -> None:
    """Every byte-offset relocation of a field the kernel has (loads and pointer arithmetic, a field
    behind anonymous struct/union members, an array element) becomes the kernel's offset."""
    seen = set()
    for section in obj.relos:
        for relo, what in relos_of(obj, section, K.BPF_CORE_FIELD_BYTE_OFFSET):
            type_name, path = kernel_path(what)
            if path in ("pocket_watch", "prio", "in_execve"):  # poisoned / bitfield: tested below
                continue
            if path == "ancestors[2]":  # a flexible array member: the reader knows no element past its 0
                expected = kernel_btf.member_offset(type_name, "ancestors") + 2 * 8
                assert value(patched[section][relo.insn_index]) == expected
                seen.add(what)
                continue
            expected = kernel_btf.member_offset(type_name.removesuffix("[1]"), path)
            if type_name.endswith("[1]"):  # t[1].pid: one whole kernel task_struct further
                expected += kernel_btf.sizeof(kernel_btf.find_id(BTF_KIND_STRUCT, "task_struct"))
            assert value(patched[section][relo.insn_index]) == expected, what
            seen.add(what)
    assert {"task_struct___v2.real_parent", "task_struct___v2.comm[3]", "task_struct___v2.pid"} <= seen
    assert {"sk_buff___local.next", "sk_buff___local.len", "task_struct___v2.se.vruntime"} <= seen
    assert {"task_struct___v2[1].pid", "cgroup___v2.ancestors[2]", "cgroup___v2.level"} <= seen


def test_offset_agrees_with_bpftool(obj: Obj, patched: dict[str, dict[int, Insn]]) -> None:
    """A second oracle for one offset: bpftool's raw dump of task_struct's ``real_parent`` bits_offset."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed")
    dump = subprocess.run(
        ["bpftool", "btf", "dump", "file", VMLINUX, "format", "raw"], capture_output=True, text=True, check=True
    ).stdout
    struct_text = re.search(r"^\[\d+\] STRUCT 'task_struct' .*?(?=^\[)", dump, re.M | re.S)
    assert struct_text is not None
    bits = re.search(r"'real_parent' type_id=\d+ bits_offset=(\d+)", struct_text[0])
    assert bits is not None
    relo = offset_relo(obj, "real_parent")
    assert value(patched[READS][relo.insn_index]) == int(bits[1]) // 8


def test_unsigned_field_of_another_width_changes_the_load_size(
    obj: Obj, patched: dict[str, dict[int, Insn]], kernel_btf: Spec
) -> None:
    """Local ``unsigned long flags`` read with a u64 load; the kernel's unsigned field's width is used."""
    relo = offset_relo(obj, "flags")
    before = slot_map(obj.insns[READS])[relo.insn_index]
    after = patched[READS][relo.insn_index]
    kernel = kernel_btf.member("task_struct", "flags")
    assert op.SIZE_BYTES[before.code & 0x18] == 8
    assert op.SIZE_BYTES[after.code & 0x18] == kernel.size
    assert after.code & ~0x18 == before.code & ~0x18 and after.off == kernel.offset


def test_missing_field_and_narrowed_signed_field_are_poisoned(
    obj: Obj, patched: dict[str, dict[int, Insn]], kernel_btf: Spec
) -> None:
    """A field the kernel lacks, and a signed field the kernel has narrower (a u64 load would misread it),
    become ``call 195896080`` as under libbpf, and are reported by slot with their C path; nothing else
    is poisoned."""
    relos = {describe(r, obj.local): r for r in obj.relos["socket"] if r.kind == K.BPF_CORE_FIELD_BYTE_OFFSET}
    for what in ("task_struct___v2.pocket_watch", "task_struct___v2.prio"):
        assert is_poison(patched["socket"][relos[what].insn_index]), what
    report: dict[int, str] = {}
    apply_core_relos(obj.insns["socket"], obj.relos["socket"], obj.local, kernel_btf, poisoned=report)
    nope = [r for r in obj.relos["socket"] if r.kind == K.BPF_CORE_ENUMVAL_VALUE and "NOPE" in describe(r, obj.local)]
    assert report == {
        relos["task_struct___v2.pocket_watch"].insn_index: "field byte offset of task_struct___v2.pocket_watch",
        relos["task_struct___v2.prio"].insn_index: "field byte offset of task_struct___v2.prio",
        nope[0].insn_index: "enumval value of enum pid_type___v2::PIDTYPE_NOPE___v2",
    }


def test_kinds_are_the_kernels(obj: Obj, patched: dict[str, dict[int, Insn]], kernel_btf: Spec) -> None:
    """Existence, size, signedness, type ids and enum values, each against the kernel's BTF."""
    task = kernel_btf.find(BTF_KIND_STRUCT, "task_struct")
    pid_type = kernel_btf.find(BTF_KIND_ENUM, "pid_type")
    tgid_value = {v.name: v.value for v in pid_type.values}["PIDTYPE_TGID"]
    local_task = obj.local.find_id(BTF_KIND_STRUCT, "task_struct___v2")
    pid_signed = kernel_btf.resolve(kernel_btf.member("task_struct", "pid").type_id).signed
    flags_signed = kernel_btf.resolve(kernel_btf.member("task_struct", "flags").type_id).signed
    parent_size = kernel_btf.member("task_struct", "real_parent").size
    list_head = kernel_btf.find(BTF_KIND_STRUCT, "list_head")
    list_head_is_two_self_pointers = [m.name for m in list_head.members] == ["next", "prev"] and all(
        kernel_btf.type_by_id(kernel_btf.resolve(m.type_id).type_id).name == "list_head" for m in list_head.members
    )
    expected = {
        (K.BPF_CORE_FIELD_EXISTS, "task_struct___v2.pid"): 1,
        (K.BPF_CORE_FIELD_EXISTS, "task_struct___v2.pocket_watch"): 0,
        (K.BPF_CORE_FIELD_BYTE_SIZE, "task_struct___v2.real_parent"): parent_size,
        (K.BPF_CORE_FIELD_SIGNED, "task_struct___v2.pid"): int(pid_signed),
        (K.BPF_CORE_FIELD_SIGNED, "task_struct___v2.flags"): int(flags_signed),
        (K.BPF_CORE_TYPE_SIZE, "task_struct___v2"): kernel_btf.sizeof(task.id),
        (K.BPF_CORE_TYPE_EXISTS, "task_struct___v2"): 1,
        (K.BPF_CORE_TYPE_EXISTS, "not_in_kernel___v1"): 0,
        (K.BPF_CORE_TYPE_SIZE, "not_in_kernel___v1"): 0,
        (K.BPF_CORE_TYPE_ID_TARGET, "task_struct___v2"): task.id,
        (K.BPF_CORE_TYPE_ID_LOCAL, "task_struct___v2"): local_task,
        (K.BPF_CORE_ENUMVAL_VALUE, "enum pid_type___v2::PIDTYPE_TGID___v2"): tgid_value,
        (K.BPF_CORE_ENUMVAL_EXISTS, "enum pid_type___v2::PIDTYPE_TGID___v2"): 1,
        (K.BPF_CORE_ENUMVAL_EXISTS, "enum pid_type___v2::PIDTYPE_NOPE___v2"): 0,
        # list_head___v2 is the kernel's {next, prev} pointers to itself; task_struct___v2's flags is 8 bytes
        (K.BPF_CORE_TYPE_MATCHES, "list_head___v2"): int(list_head_is_two_self_pointers),
        (K.BPF_CORE_TYPE_MATCHES, "task_struct___v2"): int(kernel_btf.member("task_struct", "flags").size == 8),
    }
    got = {}
    for relo in obj.relos["socket"]:
        key = (K(relo.kind), describe(relo, obj.local))
        if key in expected:
            got[key] = value(patched["socket"][relo.insn_index])
    assert got == expected


def test_missing_enum_value_poisons_both_slots_of_ld_imm64(obj: Obj, patched: dict[str, dict[int, Insn]]) -> None:
    (relo,) = [
        r
        for r in obj.relos["socket"]
        if r.kind == K.BPF_CORE_ENUMVAL_VALUE and describe(r, obj.local).endswith("NOPE___v2")
    ]
    assert obj.insns["socket"][list(slot_map(obj.insns["socket"])).index(relo.insn_index)].code == op.LD_IMM64
    assert is_poison(patched["socket"][relo.insn_index]) and is_poison(patched["socket"][relo.insn_index + 1])


def test_bitfield_read_covers_the_kernels_bits(obj: Obj, patched: dict[str, dict[int, Insn]], kernel_btf: Spec) -> None:
    """BPF_CORE_READ_BITFIELD's four values: a load of byte_size bytes at byte_offset, shifted left then
    right, leaves exactly the kernel's bits of ``in_execve`` (little-endian)."""
    values = {}
    for relo in obj.relos["socket"]:
        if describe(relo, obj.local) == "task_struct___v2.in_execve":
            values[K(relo.kind)] = value(patched["socket"][relo.insn_index])
    field = kernel_btf.member("task_struct", "in_execve")
    off, size = values[K.BPF_CORE_FIELD_BYTE_OFFSET], values[K.BPF_CORE_FIELD_BYTE_SIZE]
    lshift, rshift = values[K.BPF_CORE_FIELD_LSHIFT_U64], values[K.BPF_CORE_FIELD_RSHIFT_U64]
    assert size in (1, 2, 4, 8) and off % size == 0
    assert off * 8 <= field.bit_offset and field.bit_offset + field.bitfield_size <= (off + size) * 8
    # bits of the loaded value (bit 0 = byte off's bit 0) kept by "<< lshift >> rshift":
    low = field.bit_offset - off * 8
    assert rshift == 64 - field.bitfield_size and lshift == 64 - (low + field.bitfield_size)


_LIBBPF_PROG = re.compile(r"sec '([^']+)': found program '([^']+)' at insn offset (\d+)")
_LIBBPF_PATCH = re.compile(
    r"prog '([^']+)': relo #\d+: patched insn #(\d+) \(([^)]+)\) (off|imm|imm64|mem_sz) \d+ -> (\d+)"
)
_LIBBPF_POISON = re.compile(r"prog '([^']+)': relo #\d+: substituting insn #(\d+) w/ invalid insn")


def test_same_patches_as_libbpf(obj: Obj, patched: dict[str, dict[int, Insn]], bpffs: Path, tmp_path: Path) -> None:
    """libbpf itself as the oracle: ``bpftool -d prog loadall`` logs every CO-RE patch it makes (offset,
    immediate, 64-bit immediate, load size) and every instruction it poisons; ours are the same, slot for
    slot. (The load itself fails on the poisoned programs; only libbpf's relocation log is compared.)"""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed")
    out = tmp_path / "core_reads.o"
    subprocess.run([CLANG, "-target", "bpf", "-g", "-O2", "-c", str(SOURCE), "-o", str(out)], check=True)
    log = subprocess.run(
        ["bpftool", "-d", "prog", "loadall", str(out), str(bpffs / "core")], capture_output=True, text=True
    ).stderr
    where = {m[2]: (m[1], int(m[3])) for m in _LIBBPF_PROG.finditer(log)}  # program -> (section, first slot)
    theirs: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for m in _LIBBPF_PATCH.finditer(log):
        section, start = where[m[1]]
        theirs.setdefault((section, start + int(m[2])), []).append((m[4], int(m[5])))
    poisoned_by_libbpf = set()
    for m in _LIBBPF_POISON.finditer(log):
        section, start = where[m[1]]
        poisoned_by_libbpf.add((section, start + int(m[2])))
    assert len(theirs) + len(poisoned_by_libbpf) == sum(map(len, obj.relos.values())) + 1  # +1: ld_imm64's 2nd slot
    for (section, slot), patches in theirs.items():
        insn = patched[section][slot]
        for what, new in patches:
            got = {"off": insn.off, "imm": insn.imm & 0xFFFFFFFF, "imm64": insn.imm, "mem_sz": 0}[what]
            if what == "mem_sz":
                got = op.SIZE_BYTES[insn.code & 0x18]
            assert got == new, (section, slot, what)
    ours = {(section, slot) for section, insns in patched.items() for slot, insn in insns.items() if is_poison(insn)}
    assert ours == poisoned_by_libbpf


@pytest.mark.usefixtures("kernel")
@pytest.mark.parametrize(("section", "expected"), [("tc", os.getpid), ("classifier", os.getppid)])
def test_patched_program_reads_the_kernels_task(
    obj: Obj, kernel_btf: Spec, section: str, expected: Callable[[], int]
) -> None:
    """The relocated program loads and, run by BPF_PROG_TEST_RUN in this thread, reads this process's
    tgid (and its parent's through ``real_parent``) from the kernel's task_struct."""
    insns = apply_core_relos(obj.insns[section], obj.relos[section], obj.local, kernel_btf)
    spec = ProgramSpec("core_test", ProgType.BPF_PROG_TYPE_SCHED_CLS, insns)
    with Program.load(spec) as prog:
        assert prog.test_run(bytes(14)).retval == expected()


# -- errors, ambiguity and candidate pruning, on a hand-made target BTF --------------------------------


def two_tasks(pid_bits: tuple[int, int]) -> Spec:
    """A target BTF with two ``struct task_struct`` whose ``pid`` is at *pid_bits* bits."""
    b = BTFBuilder()
    i = b.add_int("int", 4, signed=True)
    for bits in pid_bits:
        b.add_struct("task_struct", 64, [("pid", i, bits), ("tgid", i, 256)])
    return Spec(b.encode())


def test_candidates_agreeing_resolve(obj: Obj) -> None:
    insns = obj.insns[READS]
    new = slot_map(apply_core_relos(insns, [offset_relo(obj, ".pid")], obj.local, two_tasks((64, 64))))
    assert new[offset_relo(obj, ".pid").insn_index].off == 8


def test_ambiguous_candidates_are_an_error(obj: Obj) -> None:
    with pytest.raises(CoreReloError) as err:
        apply_core_relos(obj.insns[READS], [offset_relo(obj, ".pid")], obj.local, two_tasks((64, 128)))
    assert err.value.kind is K.BPF_CORE_FIELD_BYTE_OFFSET
    assert err.value.what == "task_struct___v2.pid" and err.value.insn_index == offset_relo(obj, ".pid").insn_index
    assert "ambiguous" in err.value.problem and "task_struct___v2.pid" in str(err.value)
    # the loader adds the C line from line_info; the error survives pickling (multiprocessing, logs)
    located = CoreReloError(err.value.kind, err.value.what, err.value.insn_index, err.value.problem, "t.c:7: x")
    assert str(located).endswith("(t.c:7: x)")
    assert str(pickle.loads(pickle.dumps(located))) == str(located)


def test_candidate_that_failed_a_relocation_is_dropped(obj: Obj) -> None:
    """A first relocation that only one candidate satisfies decides the type for the next ones."""
    b = BTFBuilder()
    i = b.add_int("int", 4, signed=True)
    b.add_struct("task_struct", 64, [("pid", i, 64)])  # no tgid
    second = b.add_struct("task_struct", 64, [("pid", i, 128), ("tgid", i, 256)])
    target = Spec(b.encode())
    tgid = offset_relo(obj, ".tgid")
    cache: dict[int, list[int]] = {}
    insns = obj.insns[READS]
    new = slot_map(apply_core_relos(insns, [tgid, offset_relo(obj, ".pid")], obj.local, target, candidates=cache))
    assert new[tgid.insn_index].off == 32 and new[offset_relo(obj, ".pid").insn_index].off == 16
    assert cache[tgid.type_id] == [second]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"access": "0:99"}, "member index 99"),
        ({"access": "x"}, "not colon-separated"),
        ({"insn_index": 1}, "not the start"),
        ({"kind": 77}, "unknown relocation kind"),
        ({"twice": True}, "second relocation"),
    ],
)
def test_malformed_relocation_is_a_typed_error(
    obj: Obj, kernel_btf: Spec, change: dict[str, object], problem: str
) -> None:
    change = dict(change)  # parameters are shared between runs
    twice = change.pop("twice", False)
    relo = offset_relo(obj, ".pid")._replace(**change)
    insns = obj.insns[READS]
    if change.get("insn_index") == 1:
        insns = [Insn.ld_imm64(0, 0), *insns]  # slot 1 is the second half of an ld_imm64
    with pytest.raises(CoreReloError, match=problem) as err:
        apply_core_relos(insns, [relo] * (1 + twice), obj.local, kernel_btf)
    assert err.value.insn_index == relo.insn_index


def test_relocation_not_matching_its_instruction_is_refused(obj: Obj, kernel_btf: Spec) -> None:
    """clang's value in the instruction must be the local BTF's: a relocation aimed at another
    instruction (here pid's at tgid's load) is an error, not a silent patch."""
    tgid = offset_relo(obj, ".tgid")
    relo = offset_relo(obj, ".pid")._replace(insn_index=tgid.insn_index)
    with pytest.raises(CoreReloError, match="has off 4, the object's BTF gives 0"):
        apply_core_relos(obj.insns[READS], [relo], obj.local, kernel_btf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    type_id=st.integers(0, 40),
    access=st.one_of(
        st.text("0123456789:x-", max_size=12),
        st.lists(st.integers(0, 20), max_size=6).map(lambda parts: ":".join(map(str, parts))),
    ),
    kind=st.integers(0, 14),
    slot=st.integers(0, 40),
)
def test_arbitrary_relocation_is_applied_or_a_typed_error(
    obj: Obj, kernel_btf: Spec, type_id: int, access: str, kind: int, slot: int
) -> None:
    """Any relocation record (ids, access strings, kinds, slots as a corrupt .BTF.ext could hold) gives
    instructions or CoreReloError, never another exception."""
    try:
        apply_core_relos(obj.insns["socket"], [CoreRelo(slot, type_id, access, kind)], obj.local, kernel_btf)
    except CoreReloError as err:
        assert err.insn_index == slot


def test_essential_name() -> None:
    assert essential_name("task_struct___v2") == "task_struct"
    assert essential_name("a___b___c") == "a___b"
    assert essential_name("__x___") == "__x___"
    assert essential_name("plain") == "plain"
