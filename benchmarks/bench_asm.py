"""Instruction-set throughput: assembling + encoding a 4,096-instruction program, and disassembling it.

Each benchmark reports instructions/s (best round) next to a floor measured in the same process on the
same program: the least any encoder or decoder must do per instruction (split the text into lines and
pack one 8-byte slot each; or unpack one slot and format one string each). ``extra_info`` carries
``insns_per_s``, ``median_insns_per_s``, ``floor_insns_per_s`` and ``ratio_to_floor``.

Run: ``python3 -m pytest -o addopts="" benchmarks/bench_asm.py --benchmark-columns=min,median,rounds``
Target (issue 2): >= 300,000 instructions/s each way.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable

from pybpfguard.bpf.asm import BPF_B, BPF_DW, BPF_H, BPF_W, Insn, assemble, disassemble, finalize
from pybpfguard.bpf.asm import text as _text

N_INSNS = 4096
_SLOT = struct.Struct("<BBhi")


def build_program(n: int = N_INSNS, seed: int = 2) -> list[Insn]:
    """A deterministic mix like a generated agent program: ALU, loads/stores, jumps to labels, calls,
    ld_imm64 and atomics; ends in exit."""
    rng = random.Random(seed)
    sizes = (BPF_B, BPF_H, BPF_W, BPF_DW)
    prog: list[Insn] = []
    labels = [f"l{i}" for i in range(n // 16)]
    for i in range(n - 1):
        r = rng.randrange(10)
        kind = rng.randrange(12)
        if kind < 3:
            insn = Insn.alu64_imm(rng.choice(("add", "sub", "and", "or", "lsh")), r, rng.randrange(-999, 999))
        elif kind == 3:
            insn = Insn.alu32_reg(rng.choice(("add", "xor", "mov")), r, rng.randrange(10))
        elif kind == 4:
            insn = Insn.ldx_mem(rng.choice(sizes), r, 10, -8 * rng.randrange(1, 64))
        elif kind == 5:
            insn = Insn.stx_mem(rng.choice(sizes), 10, r, -8 * rng.randrange(1, 64))
        elif kind == 6:
            cond = rng.choice(("jeq", "jgt", "jsle", "jset"))
            insn = Insn.jmp_imm(cond, r, rng.randrange(100), to=rng.choice(labels))
        elif kind == 7:
            insn = Insn.jmp32_reg("jne", r, rng.randrange(10), to=rng.choice(labels))
        elif kind == 8:
            insn = Insn.call(rng.choice(("map_lookup_elem", "ringbuf_reserve", "get_current_pid_tgid")))
        elif kind == 9:
            insn = Insn.ld_imm64(r, rng.getrandbits(64))
        elif kind == 10:
            insn = Insn.atomic("add", BPF_DW, 10, r, -8, fetch=rng.random() < 0.5)
        else:
            insn = Insn.mov64_imm(r, rng.randrange(1 << 20))
        if i % 16 == 0:
            insn = insn.labelled(labels[i // 16])
        prog.append(insn)
    prog.append(Insn.exit())
    return prog


PROGRAM = build_program()
CODE = finalize(PROGRAM)
TEXT = disassemble(CODE)


def _best_rate(fn: Callable[[], object], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return N_INSNS / best


def encode_floor() -> bytes:
    """Split the text into lines and pack one slot per line: the least an assembler does."""
    pack = _SLOT.pack
    return b"".join([pack(0xB7, 1, 0, len(line)) for line in TEXT.splitlines()])


def decode_floor() -> str:
    """Unpack each slot and format one string per slot: the least a disassembler does."""
    return "\n".join([f"\tr{regs & 15} = {imm}" for _c, regs, _o, imm in _SLOT.iter_unpack(CODE)])


def _record(benchmark, floor: Callable[[], object]) -> None:  # type: ignore[no-untyped-def]
    stats = benchmark.stats.stats
    floor_rate = _best_rate(floor)
    rate = N_INSNS / stats.min
    benchmark.extra_info.update(
        insns_per_s=round(rate),
        median_insns_per_s=round(N_INSNS / stats.median),
        floor_insns_per_s=round(floor_rate),
        ratio_to_floor=round(rate / floor_rate, 3),
    )


def _cold() -> tuple[tuple[str], dict[str, object]]:
    _text._cache.clear()  # each round parses every line: no statement is reused from an earlier round
    return (TEXT,), {}


def test_assemble_text_and_encode_4096_insns(benchmark):
    code = benchmark.pedantic(assemble, setup=_cold, rounds=15)
    assert code == CODE
    _record(benchmark, encode_floor)


def test_finalize_builder_program_4096_insns(benchmark):
    code = benchmark.pedantic(finalize, args=(PROGRAM,), rounds=15, warmup_rounds=1)
    assert code == CODE
    _record(benchmark, encode_floor)


def test_disassemble_4096_insns(benchmark):
    text = benchmark.pedantic(disassemble, args=(CODE,), rounds=15, warmup_rounds=1)
    assert text == TEXT
    _record(benchmark, decode_floor)
