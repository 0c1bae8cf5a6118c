"""The kernel is the oracle of meaning: each ALU, JMP, byte-swap, sign-extension and atomic instruction
runs in a socket filter (BPF_PROG_TEST_RUN) and its result is compared with the semantics written in
Documentation/bpf/standardization/instruction-set.rst, modelled here in Python."""

from __future__ import annotations

import itertools

import pytest

from pybpfguard.bpf._sys import map_create
from pybpfguard.bpf.asm import BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R3, R6, R10, Insn, assemble, decode

pytestmark = pytest.mark.kernel

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def _s(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _tdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def alu_model(name: str, a: int, b: int, bits: int) -> int:
    """instruction-set.rst "Arithmetic instructions": result of ``a op= b`` on *bits* (zero-extended)."""
    m = (1 << bits) - 1
    a, b = a & m, b & m
    if name == "sdiv":
        r = 0 if b == 0 else _tdiv(_s(a, bits), _s(b, bits))
    elif name == "smod":
        r = a if b == 0 else _s(a, bits) - _tdiv(_s(a, bits), _s(b, bits)) * _s(b, bits)
    elif name == "arsh":
        r = _s(a, bits) >> (b & (bits - 1))
    else:
        r = {
            "add": lambda: a + b,
            "sub": lambda: a - b,
            "mul": lambda: a * b,
            "div": lambda: 0 if b == 0 else a // b,
            "mod": lambda: a if b == 0 else a % b,
            "or": lambda: a | b,
            "and": lambda: a & b,
            "xor": lambda: a ^ b,
            "lsh": lambda: a << (b & (bits - 1)),
            "rsh": lambda: a >> (b & (bits - 1)),
            "mov": lambda: b,
        }[name]()
    return r & m


def _result64(run_filter, body: list[Insn]) -> int:
    """Run *body* (which leaves its result in r0) twice: low word, then high word."""
    low = run_filter([*body, Insn.exit()])
    high = run_filter([*body, Insn.alu64_imm("rsh", R0, 32), Insn.exit()])
    return high << 32 | low


VALUES = (0x1122334455667788, 0xFFFFFFFFFFFFFFF6, 7, 0x8000000000000000, 0x00000000FFFFFFFF)
OPERANDS = (3, 0xFFFFFFFFFFFFFFFD, 0, 0x80000000, 33)
ALU_NAMES = ("add", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "lsh", "rsh", "arsh", "xor", "mov")


@pytest.mark.parametrize("name", ALU_NAMES)
def test_alu64_and_alu32_register_operations_match_the_documented_semantics(run_filter, name):
    for a, b in itertools.product(VALUES, OPERANDS):
        if name in ("lsh", "rsh", "arsh"):
            b &= 31
        for bits, build in ((64, Insn.alu64_reg), (32, Insn.alu32_reg)):
            body = [Insn.ld_imm64(R0, a), Insn.ld_imm64(R1, b), build(name, R0, R1)]
            assert _result64(run_filter, body) == alu_model(name, a, b, bits), (name, bits, hex(a), hex(b))


@pytest.mark.parametrize("name", ALU_NAMES)
def test_alu_immediates_are_sign_extended_in_alu64_and_used_as_32_bits_in_alu32(run_filter, name):
    for a, imm in itertools.product(VALUES, (3, -3, 0x7FFFFFFF, -0x80000000, 17)):
        if name in ("lsh", "rsh", "arsh"):
            imm &= 31
        b64 = imm & M64  # sign-extended
        for bits, build, b in ((64, Insn.alu64_imm, b64), (32, Insn.alu32_imm, imm & M32)):
            body = [Insn.ld_imm64(R0, a), build(name, R0, imm)]
            assert _result64(run_filter, body) == alu_model(name, a, b, bits), (name, bits, hex(a), imm)


def test_neg_negates_in_64_and_32_bits(run_filter):
    for a in VALUES:
        assert _result64(run_filter, [Insn.ld_imm64(R0, a), Insn.neg64(R0)]) == -a & M64
        assert _result64(run_filter, [Insn.ld_imm64(R0, a), Insn.neg32(R0)]) == -a & M32


def test_movsx_sign_extends_from_8_16_and_32_bits(run_filter):
    for a in (0x80, 0x7F, 0x8001, 0x1234_8765_4321, 0xFFFF_FF80):
        for bits in (8, 16, 32):
            got = _result64(run_filter, [Insn.ld_imm64(R1, a), Insn.movsx64(R0, R1, bits)])
            assert got == _s(a, bits) & M64, (hex(a), bits)
        for bits in (8, 16):
            got = _result64(run_filter, [Insn.ld_imm64(R1, a), Insn.movsx32(R0, R1, bits)])
            assert got == _s(a, bits) & M32, (hex(a), bits)


def test_sign_extending_loads_read_s8_s16_s32(run_filter):
    value = 0x8081_8283_F4F5_F6F7
    for size, bits in ((BPF_B, 8), (BPF_H, 16), (BPF_W, 32)):
        body = [
            Insn.ld_imm64(R1, value),
            Insn.stx_mem(BPF_DW, R10, R1, -8),
            Insn.ldsx_mem(size, R0, R10, -8),
        ]
        assert _result64(run_filter, body) == _s(value, bits) & M64
        body[-1] = Insn.ldx_mem(size, R0, R10, -8)
        assert _result64(run_filter, body) == value & ((1 << bits) - 1)


SWAPS = {
    "le": lambda v, bits: v & ((1 << bits) - 1),
    "be": lambda v, bits: int.from_bytes((v & ((1 << bits) - 1)).to_bytes(bits // 8, "little"), "big"),
}
SWAPS["bswap"] = SWAPS["be"]  # on a little-endian host be and bswap agree; the opcode differs (0xdc, 0xd7)


@pytest.mark.parametrize("kind", ["le", "be", "bswap"])
def test_byte_swaps_truncate_and_swap_as_documented(run_filter, kind):
    value = 0x0102030405060708
    for bits in (16, 32, 64):
        body = [Insn.ld_imm64(R0, value), getattr(Insn, kind)(R0, bits)]
        assert _result64(run_filter, body) == SWAPS[kind](value, bits), (kind, bits)


JMP_MODEL = {
    "jeq": lambda a, b, s: a == b,
    "jne": lambda a, b, s: a != b,
    "jgt": lambda a, b, s: a > b,
    "jge": lambda a, b, s: a >= b,
    "jlt": lambda a, b, s: a < b,
    "jle": lambda a, b, s: a <= b,
    "jsgt": lambda a, b, s: s(a) > s(b),
    "jsge": lambda a, b, s: s(a) >= s(b),
    "jslt": lambda a, b, s: s(a) < s(b),
    "jsle": lambda a, b, s: s(a) <= s(b),
    "jset": lambda a, b, s: bool(a & b),
}


@pytest.mark.parametrize("cond", sorted(JMP_MODEL))
def test_every_jump_condition_in_jmp_and_jmp32_with_register_and_immediate(run_filter, cond):
    pairs = [(5, 5), (5, 6), (0xFFFFFFFFFFFFFFFF, 1), (0x100000001, 2), (0x80000000, 0x7FFFFFFF), (3, 0)]
    for a, b in pairs:
        for bits, jmp_reg, jmp_imm in ((64, Insn.jmp_reg, Insn.jmp_imm), (32, Insn.jmp32_reg, Insn.jmp32_imm)):
            m = (1 << bits) - 1
            want = JMP_MODEL[cond](a & m, b & m, lambda v, bits=bits: _s(v, bits))
            for jump in (jmp_reg(cond, R1, R2, to="yes"), jmp_imm(cond, R1, _s(b, 32), to="yes")):
                prog = [
                    Insn.ld_imm64(R1, a),
                    Insn.ld_imm64(R2, b),
                    Insn.mov64_imm(R0, 0),
                    jump,
                    Insn.exit(),
                    Insn.mov64_imm(R0, 1).labelled("yes"),
                    Insn.exit(),
                ]
                if jump.src_reg == 0:  # the immediate is sign-extended: compare with that value
                    bb = _s(b, 32) & m
                    want_imm = JMP_MODEL[cond](a & m, bb, lambda v, bits=bits: _s(v, bits))
                    assert run_filter(prog) == want_imm, (cond, bits, hex(a), hex(b), "imm")
                else:
                    assert run_filter(prog) == want, (cond, bits, hex(a), hex(b))


def _atomic_run(run_filter, insn: Insn, initial: int, operand: int, r0: int = 0) -> tuple[int, int, int]:
    """Run *insn* on a stack u64 holding *initial* (r1 points at it, r2 = operand); return
    (memory, r2 after, r0 after)."""
    setup = [
        Insn.ld_imm64(R3, initial),
        Insn.stx_mem(BPF_DW, R10, R3, -8),
        Insn.mov64_reg(R1, R10),
        Insn.alu64_imm("add", R1, -8),
        Insn.ld_imm64(R2, operand),
        Insn.ld_imm64(R0, r0),
        insn,
    ]
    memory = _result64(run_filter, [*setup, Insn.ldx_mem(BPF_DW, R0, R10, -8)])
    src = _result64(run_filter, [*setup, Insn.mov64_reg(R0, R2)])
    ret = _result64(run_filter, setup)
    return memory, src, ret


@pytest.mark.parametrize("name", ["add", "and", "or", "xor"])
def test_atomic_read_modify_write_with_and_without_fetch(run_filter, name):
    initial, operand = 0x1111_2222_F0F0_FFFF, 0x0F0F_0001_0000_0101
    for size, bits in ((BPF_DW, 64), (BPF_W, 32)):
        m = (1 << bits) - 1
        new = alu_model(name, initial, operand, bits) | (initial & ~m & M64)
        memory, src, _ = _atomic_run(run_filter, Insn.atomic(name, size, R1, R2, 0), initial, operand)
        assert (memory, src) == (new, operand), (name, bits)
        memory, src, _ = _atomic_run(run_filter, Insn.atomic(name, size, R1, R2, 0, fetch=True), initial, operand)
        assert (memory, src) == (new, initial & m), (name, bits, "fetch")


def test_atomic_xchg_and_cmpxchg(run_filter):
    initial, operand = 0xAAAA_BBBB_CCCC_DDDD, 0x1234_5678_9ABC_DEF0
    assert _atomic_run(run_filter, Insn.atomic("xchg", BPF_DW, R1, R2, 0), initial, operand)[:2] == (operand, initial)
    # cmpxchg: r0 == memory -> store src; r0 gets the old value either way
    hit = _atomic_run(run_filter, Insn.atomic("cmpxchg", BPF_DW, R1, R2, 0), initial, operand, r0=initial)
    assert (hit[0], hit[2]) == (operand, initial)
    miss = _atomic_run(run_filter, Insn.atomic("cmpxchg", BPF_DW, R1, R2, 0), initial, operand, r0=5)
    assert (miss[0], miss[2]) == (initial, initial)
    low = _atomic_run(run_filter, Insn.atomic("cmpxchg", BPF_W, R1, R2, 0), initial, operand, r0=initial & M32)
    assert (low[0], low[2]) == ((initial & ~M32) | (operand & M32), initial & M32)


def test_load_acquire_and_store_release_in_every_size(run_filter):
    value = 0x8899_AABB_CCDD_EEFF
    for size, nbytes in ((BPF_B, 1), (BPF_H, 2), (BPF_W, 4), (BPF_DW, 8)):
        text_store = str(Insn.store_release(size, R10, R1, -16))
        text_load = str(Insn.load_acquire(size, R0, R10, -16))
        prog = [
            Insn.st_mem(BPF_DW, R10, -16, 0),
            Insn.ld_imm64(R1, value),
            *decode(assemble(text_store)),
            *decode(assemble(text_load)),
        ]
        assert _result64(run_filter, prog) == value & ((1 << (8 * nbytes)) - 1), size


def test_bpf_to_bpf_call_with_src_1_runs_the_subprogram(run_filter):
    text = "r1 = 5\ncall local(double)\nr0 += 1\nexit\ndouble:\nr0 = r1\nr0 *= 2\nexit\n"
    assert run_filter(decode(assemble(text))) == 11


def test_far_conditional_jump_relaxed_to_gotol_runs_both_ways(run_filter):
    def prog(r1: int) -> list[Insn]:
        return [
            Insn.mov64_imm(R0, 0),
            Insn.mov64_imm(R1, r1),
            Insn.jmp_imm("jeq", R1, 7, to="far"),
            *[Insn.alu64_imm("add", R0, 1)] * 40000,
            Insn.exit().labelled("far"),
        ]

    assert run_filter(prog(7)) == 0
    assert run_filter(prog(8)) == 40000


def test_map_fd_and_map_value_pseudo_loads_reach_the_map(run_filter):
    BPF_MAP_TYPE_ARRAY = 2  # include/uapi/linux/bpf.h: enum bpf_map_type
    with map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, map_name=b"asm_test") as fd:
        # one program writes through the map_value address, a second reads it back through lookup_elem
        write = [Insn.ld_map_value(R1, fd.raw, 4), Insn.st_mem(BPF_W, R1, 0, 0x5A5A), Insn.mov64_imm(R0, 0)]
        assert run_filter([*write, Insn.exit()]) == 0
        text = f"""
        *(u32 *)(r10 - 4) = 0
        r2 = r10
        r2 += -4
        r1 = map_fd({fd.raw}) ll
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r0 = *(u32 *)(r0 + 4)
        out:
        exit
        """
        assert run_filter(decode(assemble(text))) == 0x5A5A


def test_legacy_packet_loads_read_network_order(run_filter):
    data = bytes(range(64))
    ctx = Insn.mov64_reg(R6, R1)  # the legacy loads read the skb in r6
    # a socket filter's skb starts after the 14-byte Ethernet header the test run strips
    assert run_filter([ctx, Insn.ld_abs(BPF_H, 4), Insn.exit()], data) == 0x1213
    assert run_filter([ctx, Insn.mov64_imm(R1, 8), Insn.ld_ind(BPF_W, R1, 2), Insn.exit()], data) == 0x18191A1B
