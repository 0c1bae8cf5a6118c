"""Instructions -> assembly that keeps the generator's names (``format_program``), and back to the plain
form both llvm-mc and ``assemble`` read (``plain``).

The symbolic form differs from ``disassemble`` in three ways, none of which changes a byte:

- jumps name the label the generator gave (``goto deny_signal``), printed on its own line where it stands;
  a raw offset stays relative (``goto +3``);
- an ld_imm64 of a map by ``fd_array`` index names the map, ``r1 = map[deny_inode] ll``, and the text
  opens with the ``fd_array`` order as ``#   map_idx(N) = NAME`` comment lines;
- a bpf-to-bpf call names its function as LLVM does, ``call dpath_walk``;
- an instruction's ``note`` follows it as a ``#`` comment (``r2 = *(u64 *)(r6 + 1432)  # task->real_parent``).

``plain(text)`` turns every ``map[NAME]`` back into ``map_idx(N)`` using those header lines; labels and
comments are already LLVM syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pybpfguard.bpf.asm import opcodes as op
from pybpfguard.bpf.asm.disasm import decode, format_fields
from pybpfguard.bpf.asm.errors import AsmError
from pybpfguard.bpf.asm.finalize import finalize, ref_kind
from pybpfguard.bpf.asm.helpers import HELPERS
from pybpfguard.bpf.asm.insn import Insn

_CALL = op.BPF_JMP | op.BPF_CALL
_FD_ARRAY_LINE = re.compile(r"^#   map_idx\((\d+)\) = (\S+)$", re.MULTILINE)
_MAP_NAME = re.compile(r"map\[([^\]\s]+)\]")


class SymbolicFormError(AsmError):
    """The program cannot be printed symbolically (a far jump was relaxed into more instructions), or a
    ``map[NAME]`` names no map of the text's ``fd_array`` header."""


def fd_array_header(maps: Sequence[str]) -> str:
    """The comment lines naming each ``fd_array`` index (empty for a program without maps)."""
    if not maps:
        return ""
    rows = "".join(f"#   map_idx({i}) = {name}\n" for i, name in enumerate(maps))
    return f"# fd_array (the maps, by index; `map[NAME]` below):\n{rows}"


def format_program(insns: Iterable[Insn], *, maps: Sequence[str] = (), isa: int = 4) -> str:
    """*insns* as symbolic assembly (see the module doc), one tab-indented instruction per line, without
    the ``fd_array`` header (``fd_array_header(maps)``). *maps* names the ``fd_array`` indexes.

    Raises what ``finalize`` raises, and SymbolicFormError when a jump had to be relaxed (the program's
    instructions no longer match its slots one for one)."""
    prog = list(insns)
    decoded = decode(finalize(prog, isa))
    if len(decoded) != len(prog):
        raise SymbolicFormError(f"{len(prog)} instructions finalized into {len(decoded)}: a far jump was relaxed")
    lines: list[str] = []
    for insn, d in zip(prog, decoded, strict=True):
        lines += [f"{label}:" for label in insn.labels]
        target = insn.target if insn.target is not None and ref_kind(insn) is not None else None
        if d.code == op.LD_IMM64 and d.src_reg == op.BPF_PSEUDO_MAP_IDX and d.imm < len(maps):
            text = f"r{d.dst_reg} = map[{maps[d.imm]}] ll"
        elif d.code == _CALL and d.src_reg == op.BPF_PSEUDO_CALL and target and target not in HELPERS:
            text = f"call {target}"  # LLVM's spelling of a bpf-to-bpf call; assemble reads it too
        else:
            text = format_fields(d.code, d.dst_reg, d.src_reg, d.off, d.imm, target)
        lines.append(f"\t{text}  # {insn.note}" if insn.note else f"\t{text}")
    return "\n".join(lines) + "\n" if lines else ""


def plain(text: str) -> str:
    """*text* with each ``map[NAME]`` replaced by ``map_idx(N)`` from its ``#   map_idx(N) = NAME`` header
    lines: the form ``assemble`` and (with pseudo sources spelled as numbers) llvm-mc read.
    Raises SymbolicFormError for a name the header does not list."""
    index = {name: int(i) for i, name in _FD_ARRAY_LINE.findall(text)}

    def idx(m: re.Match[str]) -> str:
        try:
            return f"map_idx({index[m.group(1)]})"
        except KeyError:
            raise SymbolicFormError(f"map[{m.group(1)}] is not in the fd_array header") from None

    out = []
    for line in text.splitlines(keepends=True):
        code, mark, comment = line.partition("#")  # names inside comments stay as written
        out.append(_MAP_NAME.sub(idx, code) + mark + comment if "map[" in code else line)
    return "".join(out)
