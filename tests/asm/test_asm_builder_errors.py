"""Builder and finalize: labels, typed errors with the instruction index, the imm rules."""

from __future__ import annotations

import pickle

import pytest

from pybpfguard.bpf.asm import (
    BPF_DW,
    BPF_W,
    HELPERS,
    R0,
    R1,
    R2,
    AsmSyntaxError,
    DuplicateLabel,
    FieldRangeError,
    Insn,
    JumpOutOfRange,
    UnknownHelper,
    UnresolvedLabel,
    assemble,
    disassemble,
    finalize,
)
from pybpfguard.bpf.errors import BPFError


def test_contract_example_program_finalizes_and_round_trips_through_text():
    insns = [
        Insn.mov64_imm(R0, 0),
        Insn.ldx_mem(BPF_W, R2, R1, 0),
        Insn.jmp_imm("jeq", R2, 0, to="out"),
        Insn.ld_map_fd(R1, 7),
        Insn.call("ringbuf_reserve"),
        Insn.exit().labelled("out"),
    ]
    code = finalize(insns, isa=4)
    assert len(code) == 7 * 8
    assert assemble(disassemble(code)) == code


def test_missing_label_raises_unresolved_label_with_index():
    with pytest.raises(UnresolvedLabel) as exc:
        finalize([Insn.mov64_imm(R0, 0), Insn.ja("nowhere"), Insn.exit()])
    assert (exc.value.index, exc.value.label) == (1, "nowhere")


def test_same_label_twice_raises_duplicate_label_with_both_indexes():
    with pytest.raises(DuplicateLabel) as exc:
        finalize([Insn.mov64_imm(R0, 0).labelled("a"), Insn.exit().labelled("a")])
    assert (exc.value.index, exc.value.first_index, exc.value.label) == (1, 0, "a")


def test_out_of_range_fields_raise_with_index_value_and_limit():
    with pytest.raises(FieldRangeError) as exc:
        finalize([Insn.exit(), Insn.ldx_mem(BPF_DW, R0, R1, 40000)])
    assert (exc.value.index, exc.value.field, exc.value.value, exc.value.high) == (1, "off", 40000, 32767)
    with pytest.raises(FieldRangeError) as exc:
        finalize([Insn.mov64_imm(R0, -(1 << 31) - 1)])
    assert exc.value.field == "imm" and exc.value.index == 0
    with pytest.raises(FieldRangeError) as exc:
        finalize([Insn(0xB7, 11)])
    assert exc.value.field == "dst_reg"
    with pytest.raises(FieldRangeError):
        finalize([Insn.ld_imm64(R0, 1 << 64)])


def test_errors_are_bpf_errors_and_pickle():
    err = JumpOutOfRange(3, 40000, 32767)
    assert isinstance(err, BPFError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.index, again.distance, str(again)) == (3, 40000, str(err))
    syntax = pickle.loads(pickle.dumps(AsmSyntaxError(2, 5, "bad", "r0 = ?")))
    assert (syntax.line, syntax.column) == (2, 5)


def test_helpers_resolve_by_kernel_name_bpf_prefix_enum_name_and_id():
    assert HELPERS["map_lookup_elem"] == 1
    assert HELPERS["ringbuf_reserve"] == 131
    assert HELPERS["cgrp_storage_delete"] == 211
    assert len(HELPERS) == 212
    for spelling in ("ringbuf_reserve", "bpf_ringbuf_reserve", "BPF_FUNC_ringbuf_reserve", 131):
        assert Insn.call(spelling).imm == 131
    with pytest.raises(UnknownHelper):
        Insn.call("no_such_helper")
    with pytest.raises(UnknownHelper):
        Insn.call(212)


def test_labels_resolve_forward_and_backward_and_multiple_labels_share_an_insn():
    prog = [
        Insn.mov64_imm(R0, 0).labelled("top"),
        Insn.jmp_imm("jgt", R0, 3, to="done"),
        Insn.alu64_imm("add", R0, 1),
        Insn.ja("top"),
        Insn.exit().labelled("done").labelled("end"),
    ]
    code = finalize(prog)
    assert code == finalize([*prog[:1], Insn.jmp_imm("jgt", R0, 3, to="end"), *prog[2:]])
    assert code == assemble("top:\nr0 = 0\nif r0 > 3 goto done\nr0 += 1\ngoto top\ndone: end: exit\n")


def test_local_call_and_ld_func_offsets_count_from_the_next_slot():
    prog = [Insn.ld_func(R2, "cb"), Insn.call_local("cb"), Insn.exit(), Insn.mov64_imm(R0, 0).labelled("cb")]
    code = finalize([*prog, Insn.exit()])
    # the kernel reads ld_func's target as first slot + imm + 1 (verifier.c add_subprog_and_kfunc)
    assert int.from_bytes(code[4:8], "little", signed=True) == 3  # ld_func at slot 0, cb at slot 4
    assert int.from_bytes(code[20:24], "little", signed=True) == 1  # call at slot 2: 4 - 2 - 1
    assert "r2 = func(L4) ll" in disassemble(code) and "call local(L4)" in disassemble(code)


def test_pseudo_ld_imm64_forms_round_trip_through_our_text():
    prog = [
        Insn.ld_map_fd(R1, 5),
        Insn.ld_map_value(R1, 5, 16),
        Insn.ld_btf_id(R1, 1234),
        Insn.ld_btf_id(R1, 1234, 7),
        Insn.ld_map_idx(R1, 0),
        Insn.ld_map_idx_value(R1, 2, 8),
        Insn.call_kfunc(56789),
        Insn.call_kfunc(56789, 2),
        Insn.exit(),
    ]
    code = finalize(prog)
    text = disassemble(code)
    for needle in ("map_fd(5)", "map_value(5, 16)", "btf_id(1234)", "btf_id(1234, 7)", "map_idx(0)"):
        assert needle in text
    assert "map_idx_value(2, 8)" in text and "call kfunc(56789)" in text and "call kfunc(56789, 2)" in text
    assert assemble(text) == code


def test_isa_v4_instructions_print_and_parse():
    prog = [
        Insn.alu64_reg("sdiv", R0, R1),
        Insn.alu32_imm("smod", R0, 3),
        Insn.movsx64(R0, R1, 32),
        Insn.bswap(R0, 64),
        Insn.gotol(0),
        Insn.may_goto(0),
        Insn.load_acquire(BPF_W, R0, R1, 4),
        Insn.store_release(BPF_DW, R1, R2, -8),
        Insn.exit(),
    ]
    code = finalize(prog)
    assert assemble(disassemble(code)) == code
    assert "w0 = load_acquire((u32 *)(r1 + 4))" in disassemble(code)
    assert "store_release((u64 *)(r1 - 8), r2)" in disassemble(code)


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("r0 = 0\nr0 += r1 +\nexit", 2, 1, "expected a register or a number"),
        ("r0 = 0\n  r11 = 1", 2, 3, "register 11"),
        ("exit\nfoo", 2, 1, "unrecognised instruction"),
        ("r0 = 0x100000000", 1, 1, "needs the 'll' suffix"),
        ("a:\nexit\na:\nexit", 3, 1, "already defined on line 1"),
        ("exit\nend:", 2, 1, "not followed by an instruction"),
        ("r0 = 0\n  goto missing\nexit", 2, 8, "'missing' is not defined"),
        ("r0 = *(u64 *)(r1 + 40000)", 1, 1, "off"),
        ("w0 = r1", 1, 1, "mix"),
        ("call not_a_helper", 1, 6, "unknown helper"),
    ],
)
def test_text_errors_give_line_and_column(text, line, column, words):
    with pytest.raises(AsmSyntaxError) as exc:
        assemble(text)
    assert (exc.value.line, exc.value.column) == (line, column), str(exc.value)
    assert words in str(exc.value)


def test_comments_directives_and_blank_lines_are_ignored():
    text = "\t.text\n# a comment\nr0 = 1 // trailing\n\n  exit # done\n"
    assert assemble(text) == bytes.fromhex("b7000000010000009500000000000000")
