"""shared/cases/ASSEMBLER.md: cases from bug reports against other BPF assemblers, one test each."""

from __future__ import annotations

import struct

import pytest

from pybpfguard.bpf.asm import (
    BPF_DW,
    R0,
    R1,
    R2,
    R10,
    DecodeError,
    FieldRangeError,
    Insn,
    InvalidJumpTarget,
    JumpOutOfRange,
    assemble,
    decode,
    disassemble,
    finalize,
)


def _slots(code: bytes) -> list[tuple[int, int, int, int]]:
    return list(struct.iter_unpack("<BBhi", code))


def test_case1_forward_and_backward_offsets_count_slots_and_ld_imm64_counts_two():
    prog = [
        Insn.mov64_imm(R1, 0).labelled("loop"),  # slot 0
        Insn.jmp_reg("jlt", R2, R1, to="end"),  # slot 1: end is slot 5, off = 5 - 1 - 1 = 3
        Insn.ld_imm64(R0, 1 << 40),  # slots 2, 3
        Insn.ja("loop"),  # slot 4: off = 0 - 4 - 1 = -5
        Insn.exit().labelled("end"),  # slot 5
    ]
    slots = _slots(finalize(prog))
    assert slots[1][2] == 3
    assert slots[4][2] == -5
    # in text: four instructions ahead encodes +3; a loop head three slots back encodes -4
    code = assemble("top:\nif r2 < r1 goto end\nr0 = 0\nr0 = 1\nr0 = 2\nend:\ngoto top\nexit\n")
    assert _slots(code)[0][2] == 3
    code = assemble("r0 = 0\ntop:\nr0 += 1\nr0 += 1\nr0 += 1\ngoto top\nexit\n")
    assert _slots(code)[4][2] == -4


def test_case1_backward_jump_over_ld_imm64_counts_two_slots():
    code = assemble("top:\nr1 = 0x100000000 ll\nr0 += 1\ngoto top\nexit\n")
    # top is slot 0; goto is slot 3 (ld_imm64 takes 0-1): off = 0 - 3 - 1 = -4
    assert _slots(code)[3] == (0x05, 0, -4, 0)


def test_case2_label_on_final_exit_resolves_to_it_in_a_long_program_with_ld_imm64s():
    prog = [Insn.jmp_imm("jeq", R1, 0, to="done")]
    for i in range(260):
        prog.append(Insn.ld_imm64(R2, i << 33) if i % 3 == 0 else Insn.alu64_imm("add", R0, 1))
    prog.append(Insn.exit().labelled("done"))
    code = finalize(prog)
    n_slots = len(code) // 8
    assert code[-8:] == bytes([0x95]) + bytes(7)
    assert _slots(code)[0][2] == n_slots - 1 - 0 - 1  # the last slot, not one past it
    text = disassemble(code)
    assert text.rstrip().endswith(f"L{n_slots - 1}:\n\texit")
    assert assemble(text) == code


def _far_program(cond: str, isa: int = 4) -> bytes:
    body = [Insn.alu64_imm("add", R0, 1)] * 40000
    prog = [Insn.mov64_imm(R0, 0), Insn.jmp_imm(cond, R1, 7, to="far"), *body, Insn.exit().labelled("far")]
    return finalize(prog, isa=isa)


def test_case3_far_conditional_jump_becomes_inverted_branch_over_gotol_on_isa_v4():
    slots = _slots(_far_program("jeq"))
    assert slots[1] == (0x55, 0x01, 1, 7)  # jne r1, 7, +1: skips the gotol
    code, regs, off, imm = slots[2]
    assert (code, regs, off) == (0x06, 0, 0)  # JMP32 JA: gotol
    assert 2 + 1 + imm == len(slots) - 1  # lands on the exit
    assert slots[-1][0] == 0x95


def test_case3_far_jset_without_inverse_hops_over_a_goto_and_a_gotol():
    slots = _slots(_far_program("jset"))
    assert slots[1] == (0x45, 0x01, 1, 7)
    assert slots[2] == (0x05, 0, 1, 0)
    assert slots[3][0] == 0x06 and 3 + 1 + slots[3][3] == len(slots) - 1


def test_case3_far_backward_goto_becomes_gotol():
    prog = [Insn.mov64_imm(R0, 0).labelled("top"), *[Insn.alu64_imm("add", R0, 1)] * 33000, Insn.ja("top")]
    slots = _slots(finalize([*prog, Insn.exit()]))
    assert slots[-2] == (0x06, 0, 0, -(33001 + 1))


def test_case3_far_jump_without_v4_raises_naming_index_and_distance():
    with pytest.raises(JumpOutOfRange) as exc:
        _far_program("jgt", isa=3)
    assert exc.value.index == 1
    assert exc.value.distance == 40000
    assert "insn 1" in str(exc.value) and "40000" in str(exc.value)


def test_case4_two_first_halves_of_ld_imm64_are_refused_by_the_strict_decoder():
    code = bytes.fromhex("180000003f3b1268" * 2 + "9500000000000000")
    with pytest.raises(DecodeError) as exc:
        decode(code)
    assert exc.value.index == 0
    assert "second slot" in str(exc.value)


def test_case4_jump_into_the_second_slot_of_ld_imm64_is_refused_at_finalize():
    prog = [Insn.jmp_imm("jeq", R1, 0, to=1), Insn.ld_imm64(R2, 5), Insn.exit()]
    with pytest.raises(InvalidJumpTarget) as exc:
        finalize(prog)
    assert exc.value.index == 0 and exc.value.target_slot == 2
    assert "ld_imm64 at insn 1" in str(exc.value)


CASE5 = bytes.fromhex("18a35c14def0a5ff9a7e10eed8a42b2f")


def test_case5_lenient_disassembler_prints_the_64_bit_load_into_r3():
    assert disassemble(CASE5, lenient=True).startswith("\tr3 = 0x2f2ba4d8ffa5f0de ll")


def test_case5_strict_decoder_refuses_and_says_why():
    with pytest.raises(DecodeError) as exc:
        decode(CASE5)
    reasons = " | ".join(exc.value.reasons)
    assert "non-zero off" in reasons
    assert "unknown pseudo src 0xa" in reasons
    assert "second slot" in reasons


def test_case6_64_bit_store_of_an_immediate_is_accepted_and_a_wider_value_raises():
    code = assemble("*(u64 *)(r10 - 8) = -1")
    assert code == bytes.fromhex("7a0af8ffffffffff")
    assert finalize([Insn.st_mem(BPF_DW, R10, -8, -1)]) == code
    assert finalize([Insn.st_mem(BPF_DW, R10, -8, 0xFFFFFFFF)]) == code
    with pytest.raises(FieldRangeError) as exc:
        finalize([Insn.mov64_imm(R0, 0), Insn.st_mem(BPF_DW, R10, -8, 1 << 32)])
    assert (exc.value.index, exc.value.field, exc.value.value) == (1, "imm", 1 << 32)
    assert exc.value.high == 0xFFFFFFFF
    with pytest.raises(Exception, match=r"1:1: imm 0x100000000 outside"):
        assemble("*(u64 *)(r10 - 8) = 0x100000000")


def test_case7_minus_one_and_0xffffffff_are_the_same_imm():
    a = Insn.jmp_imm("jeq", R1, 0xFFFFFFFF, to=0)
    b = Insn.jmp_imm("jeq", R1, -1, to=0)
    assert a == b
    assert finalize([a, Insn.exit()]) == assemble("if r1 == 0xffffffff goto +0\nexit")
    assert finalize([a, Insn.exit()]) == assemble("if r1 == -1 goto +0\nexit")


@pytest.mark.kernel
def test_case7_64_bit_compare_sign_extends_the_imm(run_filter):
    def prog(value: int) -> list[Insn]:
        return [
            Insn.ld_imm64(R1, value),
            Insn.mov64_imm(R0, 0),
            Insn.jmp_imm("jeq", R1, 0xFFFFFFFF, to="taken"),
            Insn.exit(),
            Insn.mov64_imm(R0, 1).labelled("taken"),
            Insn.exit(),
        ]

    assert run_filter(prog(0xFFFFFFFFFFFFFFFF)) == 1
    assert run_filter(prog(0x00000000FFFFFFFF)) == 0


@pytest.mark.kernel
def test_case8_mov_of_minus_10_sign_extends_in_alu64_and_zero_extends_in_alu32(run_filter):
    def high_low(mov: Insn) -> tuple[int, int]:
        high = run_filter([mov, Insn.alu64_imm("rsh", R0, 32), Insn.exit()])
        return high, run_filter([mov, Insn.exit()])

    assert high_low(Insn.mov64_imm(R0, -10)) == (0xFFFFFFFF, 0xFFFFFFF6)
    assert high_low(Insn.mov32_imm(R0, -10)) == (0, 0xFFFFFFF6)
    assert assemble("r0 = -10")[0] == 0xB7 and assemble("w0 = -10")[0] == 0xB4


def _swap_result(run_filter, swap: str) -> int:
    text = (
        f"r0 = 0x1122334455667788 ll\nr0 = {swap} r0\nr1 = r0\nr1 >>= 32\nif r1 != 0 goto hi\nexit\n"
        "hi:\nr0 = r1\nr0 |= 0x40000000\nexit\n"
    )
    # returns the low word when the high word is zero, else the high word with bit 30 set as a marker
    return run_filter(decode(assemble(text)))


@pytest.mark.kernel
def test_case9_le16_and_le32_truncate_on_a_little_endian_host(run_filter):
    assert _swap_result(run_filter, "le16") == 0x7788
    assert _swap_result(run_filter, "le32") == 0x55667788
    assert _swap_result(run_filter, "be16") == 0x8877


@pytest.mark.kernel
def test_case10_0xd7_is_the_unconditional_byte_swap(run_filter):
    assert assemble("r0 = bswap16 r0")[0] == 0xD7
    assert assemble("r0 = le16 r0")[0] == 0xD4 and assemble("r0 = be16 r0")[0] == 0xDC
    assert disassemble(bytes.fromhex("d700000020000000")) == "\tr0 = bswap32 r0\n"
    assert _swap_result(run_filter, "bswap16") == 0x8877
    assert _swap_result(run_filter, "bswap32") == 0x88776655
    assert _swap_result(run_filter, "bswap64") == (0x88776655 | 0x40000000)  # high word 0x88776655


def test_case11_atomic_add_and_fetch_add_differ_only_in_imm_bit_0():
    assert assemble("lock *(u64 *)(r1 + 0) += r0") == bytes.fromhex("db01000000000000")
    assert assemble("r0 = atomic_fetch_add((u64 *)(r1 + 0), r0)") == bytes.fromhex("db01000001000000")
    assert finalize([Insn.atomic("add", BPF_DW, R1, R0, 0, fetch=True)]) == bytes.fromhex("db01000001000000")


@pytest.mark.kernel
def test_case11_fetch_add_returns_the_old_value_in_the_source_register(run_filter):
    text = """
    r1 = 40
    *(u64 *)(r10 - 8) = r1
    r2 = 2
    r1 = r10
    r1 += -8
    r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)
    r3 = 1
    lock *(u64 *)(r1 + 0) += r3
    r0 = *(u64 *)(r10 - 8)
    r0 *= 1000
    r0 += r2
    exit
    """
    assert run_filter(decode(assemble(text))) == 43 * 1000 + 40
