"""Opcode constants of the BPF instruction set, ISA v1 to v4.

Sources: include/uapi/linux/bpf_common.h and include/uapi/linux/bpf.h (the ``BPF_*`` macros), and
Documentation/bpf/standardization/instruction-set.rst (RFC 9669) for their meaning.

One instruction slot is 8 bytes, little-endian on x86-64::

    byte 0      byte 1              bytes 2-3    bytes 4-7
    code (u8)   src_reg:4|dst_reg:4 off (s16)    imm (s32)

    code for ALU/ALU64/JMP/JMP32:   op:4 | source:1 | class:3
    code for LD/LDX/ST/STX:         mode:3 | size:2 | class:3

``ld_imm64`` takes two slots; the second has code, registers and off zero and carries the upper imm.
"""

from __future__ import annotations

from enum import IntEnum

# include/uapi/linux/bpf_common.h: instruction classes (code & 0x07)
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06  # include/uapi/linux/bpf.h
BPF_ALU64 = 0x07  # include/uapi/linux/bpf.h

# include/uapi/linux/bpf_common.h: load/store sizes (code & 0x18)
BPF_W = 0x00  # 4 bytes
BPF_H = 0x08  # 2 bytes
BPF_B = 0x10  # 1 byte
BPF_DW = 0x18  # 8 bytes, include/uapi/linux/bpf.h

# load/store modes (code & 0xe0): bpf_common.h, MEMSX and ATOMIC from bpf.h
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

# ALU/JMP source (code & 0x08)
BPF_K = 0x00
BPF_X = 0x08

# include/uapi/linux/bpf_common.h + bpf.h: ALU operations (code & 0xf0)
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_ARSH = 0xC0
BPF_END = 0xD0

# byte order for BPF_END (the source bit): to little / big endian
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08

# JMP operations (code & 0xf0)
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0
BPF_JSLT = 0xC0
BPF_JSLE = 0xD0
BPF_JCOND = 0xE0  # may_goto (src_reg BPF_MAY_GOTO = 0), Linux 6.9

# include/uapi/linux/bpf.h: atomic operations, in imm of BPF_STX | BPF_ATOMIC
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH
BPF_LOAD_ACQ = 0x100  # Linux 6.15
BPF_STORE_REL = 0x110  # Linux 6.15

# include/uapi/linux/bpf.h: src_reg of BPF_LD | BPF_IMM | BPF_DW (ld_imm64)
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6

# include/uapi/linux/bpf.h: src_reg of BPF_JMP | BPF_CALL
BPF_PSEUDO_CALL = 1  # bpf-to-bpf call, imm = relative slot offset
BPF_PSEUDO_KFUNC_CALL = 2  # imm = BTF id of the kernel function, off = fd_array index of its BTF

# off of BPF_ALU64 | BPF_MOV | BPF_X meaning a pointer cast between address spaces (arena), Linux 6.9
BPF_ADDR_SPACE_CAST = 1

#: size constant -> bytes
SIZE_BYTES = {BPF_B: 1, BPF_H: 2, BPF_W: 4, BPF_DW: 8}
#: size constant -> the C type LLVM prints (``u32``)
SIZE_TYPE = {BPF_B: "u8", BPF_H: "u16", BPF_W: "u32", BPF_DW: "u64"}
#: code of the first slot of ld_imm64
LD_IMM64 = BPF_LD | BPF_DW | BPF_IMM


class Reg(IntEnum):
    """BPF registers: R0 return value, R1-R5 arguments, R6-R9 callee saved, R10 read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Reg
#: the frame pointer, read-only
RFP = R10

#: ALU operation names (as in ``Insn.alu64_imm("add", ...)``) -> (op, off). sdiv/smod are div/mod with off 1.
ALU_OPS: dict[str, tuple[int, int]] = {
    "add": (BPF_ADD, 0),
    "sub": (BPF_SUB, 0),
    "mul": (BPF_MUL, 0),
    "div": (BPF_DIV, 0),
    "sdiv": (BPF_DIV, 1),
    "or": (BPF_OR, 0),
    "and": (BPF_AND, 0),
    "lsh": (BPF_LSH, 0),
    "rsh": (BPF_RSH, 0),
    "mod": (BPF_MOD, 0),
    "smod": (BPF_MOD, 1),
    "xor": (BPF_XOR, 0),
    "mov": (BPF_MOV, 0),
    "arsh": (BPF_ARSH, 0),
}

#: jump condition names -> op
JMP_CONDS: dict[str, int] = {
    "jeq": BPF_JEQ,
    "jgt": BPF_JGT,
    "jge": BPF_JGE,
    "jset": BPF_JSET,
    "jne": BPF_JNE,
    "jsgt": BPF_JSGT,
    "jsge": BPF_JSGE,
    "jlt": BPF_JLT,
    "jle": BPF_JLE,
    "jslt": BPF_JSLT,
    "jsle": BPF_JSLE,
}

#: condition -> its negation, for relaxing a far conditional jump over a gotol (JSET has none)
JMP_INVERSE: dict[int, int] = {
    BPF_JEQ: BPF_JNE,
    BPF_JNE: BPF_JEQ,
    BPF_JGT: BPF_JLE,
    BPF_JLE: BPF_JGT,
    BPF_JGE: BPF_JLT,
    BPF_JLT: BPF_JGE,
    BPF_JSGT: BPF_JSLE,
    BPF_JSLE: BPF_JSGT,
    BPF_JSGE: BPF_JSLT,
    BPF_JSLT: BPF_JSGE,
}

#: atomic operation names -> imm (without BPF_FETCH)
ATOMIC_OPS: dict[str, int] = {
    "add": BPF_ADD,
    "and": BPF_AND,
    "or": BPF_OR,
    "xor": BPF_XOR,
    "xchg": BPF_XCHG,
    "cmpxchg": BPF_CMPXCHG,
}
