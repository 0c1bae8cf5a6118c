"""The BPF instruction set (ISA v1 to v4): instructions as values, labels resolved by ``finalize``,
the LLVM BPF assembly syntax in (``assemble``) and out (``disassemble``), and the helper table.

    from pybpfguard.bpf.asm import Insn, R0, R1, BPF_W, finalize
    code = finalize([Insn.mov64_imm(R0, 0), Insn.exit()])          # -> 16 bytes

Only ``finalize`` computes offsets (``finalize.py``); nothing here issues a syscall.
"""

from pybpfguard.bpf.asm.errors import (
    AsmError,
    AsmSyntaxError,
    DecodeError,
    DuplicateLabel,
    FieldRangeError,
    InvalidJumpTarget,
    JumpOutOfRange,
    UnknownHelper,
    UnresolvedLabel,
)
from pybpfguard.bpf.asm.finalize import finalize
from pybpfguard.bpf.asm.helpers import HELPER_NAMES, HELPERS, BpfFunc, helper_id, helper_name
from pybpfguard.bpf.asm.insn import Insn
from pybpfguard.bpf.asm.opcodes import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_ARSH,
    BPF_B,
    BPF_DIV,
    BPF_DW,
    BPF_H,
    BPF_JA,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JMP,
    BPF_JMP32,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_LD,
    BPF_LDX,
    BPF_LSH,
    BPF_MOD,
    BPF_MUL,
    BPF_OR,
    BPF_RSH,
    BPF_ST,
    BPF_STX,
    BPF_SUB,
    BPF_W,
    BPF_XOR,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    RFP,
    Reg,
)

__all__ = [
    "BPF_ADD",
    "BPF_ALU",
    "BPF_ALU64",
    "BPF_AND",
    "BPF_ARSH",
    "BPF_B",
    "BPF_DIV",
    "BPF_DW",
    "BPF_H",
    "BPF_JA",
    "BPF_JEQ",
    "BPF_JGE",
    "BPF_JGT",
    "BPF_JLE",
    "BPF_JLT",
    "BPF_JMP",
    "BPF_JMP32",
    "BPF_JNE",
    "BPF_JSET",
    "BPF_JSGE",
    "BPF_JSGT",
    "BPF_JSLE",
    "BPF_JSLT",
    "BPF_LD",
    "BPF_LDX",
    "BPF_LSH",
    "BPF_MOD",
    "BPF_MUL",
    "BPF_OR",
    "BPF_RSH",
    "BPF_ST",
    "BPF_STX",
    "BPF_SUB",
    "BPF_W",
    "BPF_XOR",
    "HELPERS",
    "HELPER_NAMES",
    "R0",
    "R1",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "R10",
    "RFP",
    "AsmError",
    "AsmSyntaxError",
    "BpfFunc",
    "DecodeError",
    "DuplicateLabel",
    "FieldRangeError",
    "Insn",
    "InvalidJumpTarget",
    "JumpOutOfRange",
    "Reg",
    "UnknownHelper",
    "UnresolvedLabel",
    "assemble",
    "decode",
    "disassemble",
    "fd_array_header",
    "finalize",
    "format_insn",
    "format_program",
    "helper_id",
    "helper_name",
    "parse",
    "plain",
]

# The text parser and the disassembler are imported on first use: a program generator or loader needs
# neither, and they are a large share of the import time of the daemon's start-up.
_LAZY = {"assemble": "text", "parse": "text", "decode": "disasm", "disassemble": "disasm", "format_insn": "disasm",
         "format_program": "symbolic", "fd_array_header": "symbolic", "plain": "symbolic"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
