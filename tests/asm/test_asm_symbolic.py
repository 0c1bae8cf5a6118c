"""bpf.asm.symbolic: the listing form keeps labels, map names and notes, and plain() reads back to the
same bytes through assemble; a note never changes an instruction's value or encoding."""

from __future__ import annotations

import pytest

from pybpfguard.bpf.asm import (
    BPF_DW,
    R0,
    R1,
    R2,
    R6,
    Insn,
    assemble,
    fd_array_header,
    finalize,
    format_program,
    plain,
)
from pybpfguard.bpf.asm.symbolic import SymbolicFormError

MAPS = ("agent_config", "deny_inode")


def _program() -> list[Insn]:
    return [
        Insn.ldx_mem(BPF_DW, R6, R1, 1280).noted("task_struct->real_parent"),
        Insn.ld_map_idx(R1, 1),
        Insn.call("map_lookup_elem"),
        Insn.jmp_imm("jeq", R0, 0, to="allow"),
        Insn.jmp_imm("jne", R0, 0, to=1),  # a raw offset stays relative
        Insn.mov64_imm(R0, -1),
        Insn.exit(),
        Insn.call_local("sub"),
        Insn.mov64_imm(R0, 0).labelled("allow").labelled("done"),
        Insn.exit(),
        Insn.mov64_imm(R0, 0).labelled("sub"),
        Insn.exit(),
    ]


def test_the_symbolic_form_names_labels_maps_and_notes():
    text = fd_array_header(MAPS) + format_program(_program(), maps=MAPS)
    assert "#   map_idx(1) = deny_inode\n" in text
    assert "\tr1 = map[deny_inode] ll\n" in text
    assert "\tr6 = *(u64 *)(r1 + 1280)  # task_struct->real_parent\n" in text
    assert "\tif r0 == 0 goto allow\n" in text and "\tif r0 != 0 goto +1\n" in text
    assert "allow:\ndone:\n\tr0 = 0\n" in text and "\tcall sub\n" in text


def test_plain_assembles_to_the_generator_bytes():
    text = fd_array_header(MAPS) + format_program(_program(), maps=MAPS)
    assert "map_idx(1) ll" in plain(text)
    assert assemble(plain(text)) == finalize(_program())


def test_plain_refuses_a_map_the_header_does_not_list():
    with pytest.raises(SymbolicFormError, match=r"map\[nope\]"):
        plain(fd_array_header(MAPS) + "\tr1 = map[nope] ll\n")


def test_a_map_index_without_a_name_keeps_the_llvm_form():
    assert format_program([Insn.ld_map_idx(R2, 3), Insn.exit()], maps=MAPS).startswith("\tr2 = map_idx(3) ll\n")


def test_a_note_is_no_part_of_the_instruction():
    insn = Insn.mov64_imm(R0, 1)
    noted = insn.noted("why")
    assert noted == insn and hash(noted) == hash(insn) and noted.note == "why"
    assert finalize([noted]) == finalize([insn])


def test_a_relaxed_far_jump_cannot_be_printed_symbolically():
    prog = [Insn.jmp_imm("jeq", R0, 0, to="far"), *[Insn.mov64_imm(R0, 0)] * 40000, Insn.exit().labelled("far")]
    with pytest.raises(SymbolicFormError, match="relaxed"):
        format_program(prog)


def test_helper_constants_are_the_id_table():
    from pybpfguard.bpf.asm import HELPER_NAMES, BpfFunc

    assert [getattr(BpfFunc, name) for name in HELPER_NAMES] == list(range(212))
    assert Insn.call(BpfFunc.ringbuf_reserve) == Insn.call("ringbuf_reserve")
