"""``llvm-objdump-19 -d`` of clang-19 objects assembles back to the objects' bytes, in both its modes.

``data/every_kind.c`` uses every instruction kind clang emits for BPF. It is compiled at test time with
``-mcpu=v2`` (no alu32), ``v3`` and ``v4``; each object is disassembled plain and with ``--mattr=+alu32``
(``--no-leading-addr --no-show-raw-insn``, its ``<label>`` annotations stripped) and the text assembled
with ``assemble``. The oracle is the object's section bytes as pyelftools reads them (relocations
unapplied: a map reference is ``r1 = 0x0 ll`` in the text and in the bytes).

Two things the text cannot carry, handled here and nowhere else:

- a bpf-to-bpf call is ``call -0x1`` in the text, as a helper call with the same imm is (llvm-mc itself
  encodes ``call -1`` with src_reg 0): where the object's call has src_reg 1 (BPF_PSEUDO_CALL), the line
  becomes our ``call local(-1)``;
- without ``--mattr=+alu32`` llvm-objdump-19 knows one 32-bit atomic, ``lock *(u32 *)(...) += rN``: it
  prints ``<unknown>`` for the others, and prints a 32-bit fetch-add as that lock add. For the v3/v4
  objects in plain mode those instructions are left out (the alu32 listing covers them); every other
  instruction, and every instruction of the v2 object, must match.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pybpfguard.bpf.asm import assemble
from pybpfguard.bpf.asm.opcodes import BPF_ADD, BPF_ATOMIC, BPF_CALL, BPF_JMP, BPF_PSEUDO_CALL, BPF_STX, BPF_W

CLANG = "clang-19"
OBJDUMP = "llvm-objdump-19"
SOURCE = Path(__file__).parent / "data" / "every_kind.c"
CPUS = ("v2", "v3", "v4")

_SECTION = re.compile(r"Disassembly of section (.+):$")
_SYMBOL = re.compile(r"<[^<>\s]+>:$")
_ANNOTATION = re.compile(r"\s+<[^<>\s]+>$")  # "goto +0x3 <LBB0_2>", "gotol +0x0 <every_kind+0xf20>"
_CALL = re.compile(r"call (-?(?:0x)?[0-9a-f]+)$")
_ATOMIC_W = BPF_STX | BPF_ATOMIC | BPF_W


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{cpu: object path}`` for every_kind.c compiled per CPU; skips (fails under
    PYBPFGUARD_REQUIRE_KERNEL=1) without clang-19 or llvm-objdump-19."""
    missing = [tool for tool in (CLANG, OBJDUMP) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install clang-19 llvm-19)")
    out = tmp_path_factory.mktemp("clang")
    found = {}
    for cpu in CPUS:
        obj = out / f"every_kind_{cpu}.o"
        cmd = [CLANG, "-target", "bpf", f"-mcpu={cpu}", "-O2", "-c", str(SOURCE), "-o", str(obj)]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr
        found[cpu] = obj
    return found


def _listing(obj: Path, alu32: bool) -> dict[str, list[str]]:
    """``{section: [instruction text]}`` from llvm-objdump-19, annotations stripped."""
    cmd = [OBJDUMP, "-d", "--no-leading-addr", "--no-show-raw-insn", *(["--mattr=+alu32"] if alu32 else []), str(obj)]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if m := _SECTION.match(line):
            current = sections.setdefault(m.group(1), [])
        elif current is not None and line and not _SYMBOL.match(line):
            current.append(_ANNOTATION.sub("", line))
    return sections


def _section_bytes(obj: Path) -> dict[str, bytes]:
    with obj.open("rb") as f:
        return {s.name: s.data() for s in ELFFile(f).iter_sections()}


def _instructions(code: bytes) -> Iterator[bytes]:
    """The 8- or 16-byte (ld_imm64) instructions of *code*."""
    pos = 0
    while pos < len(code):
        size = 16 if code[pos] == 0x18 else 8
        yield code[pos : pos + size]
        pos += size


def _with_local_calls(lines: list[str], insns: list[bytes]) -> list[str]:
    """*lines* with each bpf-to-bpf call (src_reg 1 in the object) written ``call local(N)``."""
    out = []
    for line, insn in zip(lines, insns, strict=True):
        m = _CALL.match(line)
        if m and insn[0] == BPF_JMP | BPF_CALL and insn[1] >> 4 == BPF_PSEUDO_CALL:
            line = f"call local({m.group(1)})"
        out.append(line)
    return out


def _objdump_gap(line: str, insn: bytes, alu32: bool) -> bool:
    """A 32-bit atomic other than lock add that plain llvm-objdump-19 printed as ``<unknown>`` or as a
    lock add (module doc)."""
    if alu32 or insn[0] != _ATOMIC_W or struct.unpack_from("<i", insn, 4)[0] == BPF_ADD:
        return False
    return line == "<unknown>" or line.startswith("lock *(u32 *)")


@pytest.mark.parametrize("alu32", [False, True], ids=["plain", "alu32"])
@pytest.mark.parametrize("cpu", CPUS)
def test_llvm_objdump_text_of_a_clang_object_assembles_to_its_bytes(objects, cpu, alu32):
    obj = objects[cpu]
    data = _section_bytes(obj)
    listing = _listing(obj, alu32)
    assert "socket" in listing and ".text" in listing
    for name, lines in listing.items():
        insns = list(_instructions(data[name]))
        lines = _with_local_calls(lines, insns)
        kept = [(line, insn) for line, insn in zip(lines, insns, strict=True) if not _objdump_gap(line, insn, alu32)]
        if len(kept) == len(lines):
            assert assemble("\n".join(lines)) == data[name], name
        else:  # numeric offsets only, so each line assembles alone
            for line, insn in kept:
                assert assemble(line) == insn, (name, line, insn.hex())
    if not alu32:  # the spelling: llvm-objdump's plain 32-bit lock add, register r
        assert any(re.fullmatch(r"lock \*\(u32 \*\)\(r\d+ \+ 0x\w+\) \+= r\d+", line) for line in listing["socket"])


def test_the_objects_hold_every_instruction_kind_the_c_file_promises(objects):
    """A guard on every_kind.c: a clang that folds a construct away would silently shrink the test."""
    kinds: set[tuple[int, int]] = set()
    for insn in _instructions(_section_bytes(objects["v4"])["socket"]):
        code, regs, off, imm = struct.unpack_from("<BBhi", insn)
        cls = code & 0x07
        if cls in (0x04, 0x07) and code & 0xF0 in (0x30, 0x90, 0xB0):  # div, mod, mov: signed forms in off
            kinds.add((code, off))
        elif code & 0xC7 == 0xC3:  # atomics: the operation in imm
            kinds.add((code, imm))
        elif code == 0x85:
            kinds.add((code, regs >> 4))
        else:
            kinds.add((code, 0))
    # ALU and ALU64: every operation, register and immediate (0xd4/0xdc/0xd7 byte swaps)
    alu = {
        (cls | op | src, 0)
        for cls in (0x04, 0x07)
        for op in (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0, 0xB0, 0xC0)
        for src in (0x00, 0x08)
    }
    signed = {(cls | op | src, 1) for cls in (0x04, 0x07) for op in (0x30, 0x90) for src in (0x00, 0x08)}
    movsx = {(0xBF, 8), (0xBF, 16), (0xBF, 32), (0xBC, 8), (0xBC, 16)}
    jumps = {
        (cls | op | src, 0)
        for cls in (0x05, 0x06)
        for op in range(0x10, 0xE0, 0x10)
        if op not in (0x80, 0x90)
        for src in (0x00, 0x08)
    }
    atomics = {
        (code, imm) for code in (0xC3, 0xDB) for imm in (0x00, 0x50, 0x40, 0xA0, 0x01, 0x51, 0x41, 0xA1, 0xE1, 0xF1)
    }
    memory = {
        (code, 0) for code in (0x71, 0x69, 0x61, 0x79, 0x91, 0x89, 0x81, 0x73, 0x6B, 0x63, 0x7B, 0x72, 0x6A, 0x62, 0x7A)
    }
    other = {
        (0x87, 0),
        (0x84, 0),
        (0xD7, 0),
        (0x18, 0),
        (0x85, 0),
        (0x85, BPF_PSEUDO_CALL),
        (0x8D, 0),
        (0x05, 0),
        (0x06, 0),
        (0xE5, 0),
        (0x95, 0),
    }
    missing = (alu | signed | movsx | jumps | atomics | memory | other) - kinds
    assert not missing, [(hex(code), x) for code, x in sorted(missing)]
    # below v4, byte swaps are be16/32/64 (0xdc); without alu32 the one 32-bit atomic is lock add (0xc3)
    v2_codes = {insn[0] for insn in _instructions(_section_bytes(objects["v2"])["socket"])}
    assert {0xDC, 0xC3, 0xDB} <= v2_codes
