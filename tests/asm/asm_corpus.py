"""A corpus of LLVM BPF assembly lines covering every instruction kind llvm-mc-19 knows (ISA v1-v4)."""

from __future__ import annotations

from pybpfguard.bpf.asm.helpers import HELPER_NAMES

ALU_SYMS = ("+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "%=", "^=", "=", "s>>=", "s/=", "s%=")
CONDS = ("==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&")
IMMS = ("0", "1", "-1", "2147483647", "-2147483648", "4095")
SIZES = ("u8", "u16", "u32", "u64")


def llvm_corpus() -> list[str]:
    """Every instruction kind, in llvm-mc's spelling (numeric jump offsets only: no fixups)."""
    lines: list[str] = []
    for p in "rw":
        for sym in ALU_SYMS:
            for dst, src in ((0, 1), (9, 10), (5, 5)):
                lines.append(f"{p}{dst} {sym} {p}{src}")
            for imm in IMMS:
                lines.append(f"{p}3 {sym} {imm}")
        lines.append(f"{p}7 = -{p}7")
        lines += [f"{p}1 = (s8){p}2", f"{p}1 = (s16){p}2"]
        for cond in CONDS:
            lines += [f"if {p}1 {cond} {p}2 goto +5", f"if {p}9 {cond} -3 goto -7", f"if {p}0 {cond} 0 goto +0"]
    lines.append("r1 = (s32)r2")
    for kind in ("le", "be", "bswap"):
        lines += [f"r4 = {kind}{bits} r4" for bits in (16, 32, 64)]
    lines += ["goto +0", "goto -1", "goto +32767", "goto -32768", "gotol +30000", "gotol -5", "may_goto +3"]
    lines += [f"call {helper_id}" for helper_id in range(len(HELPER_NAMES))]
    lines += ["exit"]
    for size in SIZES:
        lines += [f"r1 = *({size} *)(r2 + 8)", f"r0 = *({size} *)(r10 - 512)", f"r9 = *({size} *)(r1 + 32767)"]
        lines += [f"*({size} *)(r10 - 8) = r1", f"*({size} *)(r1 + 0) = -1", f"*({size} *)(r1 + 4) = 2147483647"]
        if size != "u64":
            lines += [f"w1 = *({size} *)(r2 + 8)", f"*({size} *)(r10 - 8) = w3"]
            lines += [f"r1 = *(s{size[1:]} *)(r2 - 2)"]
            lines += [f"r0 = *({size} *)skb[4]", f"r0 = *({size} *)skb[r1]"]
    for p, size in (("w", "u32"), ("r", "u64")):
        for sym, name in (("+=", "add"), ("&=", "and"), ("|=", "or"), ("^=", "xor")):
            lines.append(f"lock *({size} *)(r1 + 0) {sym} {p}2")
            lines.append(f"{p}3 = atomic_fetch_{name}(({size} *)(r10 - 8), {p}3)")
    lines += ["r2 = xchg_64(r1 + 8, r2)", "w2 = xchg32_32(r1 - 8, w2)"]
    lines += ["r0 = cmpxchg_64(r1 + 0, r0, r2)", "w0 = cmpxchg32_32(r3 + 16, w0, w4)"]
    lines += ["r1 = 0 ll", "r1 = -1 ll", "r9 = 0x123456789abcdef0 ll", "r0 = 0x80000000 ll"]
    lines += ["r1 = addr_space_cast(r2, 0, 1)", "r1 = addr_space_cast(r2, 1, 0)"]
    return lines


def llvm_spellings() -> list[str]:
    """Other spellings llvm-mc-19 reads for the same instructions: what ``llvm-objdump -d`` prints without
    ``--mattr=+alu32`` (32-bit atomics with an r-register), its hex offsets, llvm-mc's number syntax, optional
    spaces, upper-case first words, ``callx`` and ``ld_pseudo``."""
    lines = ["lock *(u32 *)(r2 + 16) += r9"]
    lines += ["lock *(u32*)(r2+0x10)+=r9", "lock *(u32 *)(r2 - 0x10) += w9"]
    lines += ["r1 = *(u32 *)(r1 + 0x10)", "r1 = *(s16 *)(r1 - 0x10)", "*(u64 *)(r10 - 0x8) = -0x1"]
    lines += ["*(u64 *)(r10 - 8) = 0", "*(u32 *)(r10 - 0x8) = 0xffffffff", "*(u32 *)(r10 - 8) = r1"]
    lines += ["r1 = *(u32 *)(r1 + 010)", "r0 = 010", "r0 = -017", "r0 = 0b101", "r0 = 0B11", "r0 = 00", "r0 = 0XFF"]
    lines += ["r0 s/= 0x10", "w0 s%= -0x3", "r0 = -0x80000000", "r0 = 2147483648", "w3 += 0x7fffffff"]
    lines += ["r0=r1", "r0 +=1", "w1=*(u8*)(r2+1)", "r0 = - r0", "r0 = (s8) r1", "if r1==r2 goto+5", "goto+5"]
    lines += ["if w1 == w2 goto +5", "if w1 == 0x10 goto -0x1", "if r1 &r2 goto +1", "if r1 s> -0x1 goto +0x7fff"]
    lines += ["goto +0x3", "goto -0x8000", "gotol +0x3", "gotol -0x1", "may_goto +0x3", "call 0x1", "call -0x1"]
    lines += ["callx r1", "callx r10", "ld_pseudo r1, 1, 5", "ld_pseudo r9, 2, 0xffffffff", "ld_pseudo r1 4, -1"]
    lines += ["r1 = 0x0 ll", "r1 = -0x1 ll", "r0 = 18446744073709551615 ll", "r0 = -9223372036854775808 ll"]
    lines += ["r0 = be16 r0", "r0 = le64 r0", "r0 = bswap32 r0", "w1 = (s16)w2", "r1 = addr_space_cast(r2, 0x1, 0x0)"]
    lines += ["EXIT", "Exit", "R0 = 1", "W0 = 1", "If r1 == 0 goto +1", "LOCK *(u32 *)(r1 + 0) += r2", "GOTO +1"]
    lines += ["CALL 1", "GOTOL +3", "MAY_GOTO +3", "CALLX r1", "LD_PSEUDO r1, 1, 5"]
    lines += ["r0 = 1 /* c */", "exit // c", "exit # c", "r0 = atomic_fetch_add((u64 *)(r1 + 0x8), r0)"]
    lines += ["w2 = xchg32_32(r1 - 0x8, w2)", "r0 = cmpxchg_64(r1 + 0x0, r0, r2)"]
    return lines
