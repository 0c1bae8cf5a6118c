"""Our bytes against llvm-mc-19's, for every instruction kind llvm knows, and round trips of the text."""

from __future__ import annotations

import struct
import subprocess

from asm_corpus import llvm_corpus, llvm_spellings
from conftest import LLVM_MC
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpfguard.bpf.asm import AsmError, DecodeError, assemble, decode, disassemble, finalize
from pybpfguard.bpf.asm.disasm import check_insn
from pybpfguard.bpf.asm.opcodes import BPF_LOAD_ACQ, BPF_STORE_REL


def test_every_corpus_line_assembles_to_the_bytes_llvm_mc_gives(llvm_mc):
    lines = llvm_corpus()
    expected = llvm_mc(lines)
    for line, want in zip(lines, expected, strict=True):
        assert assemble(line) == want, line


def test_other_spellings_llvm_mc_reads_assemble_to_its_bytes(llvm_mc):
    lines = llvm_spellings()
    for line, want in zip(lines, llvm_mc(lines), strict=True):
        assert assemble(line) == want, line


def test_statements_separated_by_semicolons_and_block_comments_across_lines(llvm_mc):
    want = b"".join(llvm_mc(["r0 = 1", "r1 = 2", "exit", "exit"]))
    assert assemble("r0 = 1 ; r1 = 2;exit\na: exit") == want
    assert assemble("r0 = 1 /* one\n two */\nr1 = 2 # /* not a block\nexit;;\nexit") == want


def test_label_references_resolve_as_in_llvm_mc_objects(llvm_mc, tmp_path):
    # llvm-mc resolves labels only when it writes an object ("call sub" is what clang -S writes for a
    # bpf-to-bpf call); the object's .text is the oracle
    text = "\n".join(
        [
            "top: r0 = 1",
            "if r0 > 3 goto out",
            "if w0 s< -1 goto top",
            "call sub",
            "r1 = 0x100000000 ll",
            "goto top",
            "gotol out",
            "out: exit",
            "sub: r0 = 2; call top",
            "exit",
        ]
    )
    src, obj = tmp_path / "labels.s", tmp_path / "labels.o"
    src.write_text(text + "\n")
    subprocess.run([LLVM_MC, "-triple", "bpf", "-mcpu=v4", "-filetype=obj", str(src), "-o", str(obj)], check=True)
    with obj.open("rb") as f:
        want = ELFFile(f).get_section_by_name(".text").data()
    assert assemble(text) == want


def test_our_disassembly_of_llvm_bytes_reassembles_through_llvm_mc_to_the_same_bytes(llvm_mc):
    lines = llvm_corpus()
    blob = b"".join(llvm_mc(lines))
    ours = disassemble(blob, labels=False).splitlines()
    assert b"".join(llvm_mc(ours)) == blob


def test_disassembly_with_labels_reassembles_to_the_same_bytes():
    blob = assemble("\n".join(llvm_corpus()))
    text = disassemble(blob)
    assert "L" in text  # some targets landed inside the corpus and became labels
    assert assemble(text) == blob
    assert finalize(decode(blob)) == blob


def _valid_variants(code: int) -> list[tuple[int, int, int, int, int]]:
    """Field combinations that make *code* a valid instruction (empty if none does)."""
    found = []
    for dst in (0, 1):
        for src in (0, 1, 2, 3):
            for off in (0, 1, 8, 16):
                for imm in (0, 1, 16, 0xE1, 0xF1, BPF_LOAD_ACQ, BPF_STORE_REL):
                    if not check_insn(code, dst, src, off, imm):
                        found.append((code, dst, src, off, imm))
    return found


def test_every_opcode_the_decoder_accepts_is_in_the_llvm_corpus_except_acquire_release():
    corpus_codes = {insn.code for insn in decode(assemble("\n".join(llvm_corpus())))}
    valid_codes = {code for code in range(256) if _valid_variants(code)}
    # STX|ATOMIC|B and |H exist only as load-acquire/store-release, unknown to llvm-19: the kernel tests cover them
    assert valid_codes - corpus_codes == {0xD3, 0xCB}
    assert corpus_codes <= valid_codes


def test_the_decoder_accepts_exactly_the_documented_opcodes():
    valid_codes = {code for code in range(256) if _valid_variants(code)}
    # ALU 12 ops x 2 sources + neg + le/be = 27; ALU64 24 + neg + bswap = 26; JMP 11 conditions x 2 + ja,
    # call, exit, may_goto = 26; JMP32 22 + gotol = 23; LD imm64 + 3 abs + 3 ind = 7; LDX 4 mem + 3 memsx = 7;
    # ST 4; STX 4 mem + 4 atomic = 8
    assert len(valid_codes) == 27 + 26 + 26 + 23 + 7 + 7 + 4 + 8
    # 0x00 is the ld_imm64 second slot's code, never a first slot
    for code in (0x00, 0x08, 0x38, 0xE4, 0xF7, 0x8D, 0x86, 0x96, 0xDF, 0x8F, 0x8C, 0x9B, 0xE6, 0x8E):
        assert code not in valid_codes, hex(code)


_slot = st.binary(min_size=8, max_size=8)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(first=_slot, second=_slot)
def test_any_valid_slot_round_trips_and_any_invalid_one_is_refused_with_a_reason(first, second):
    code = first if first[0] != 0x18 else first + second[:4].replace(second[:4], b"\0\0\0\0") + second[4:]
    try:
        insns = decode(code)
    except DecodeError as err:
        assert err.reasons and err.index == 0
        return
    text = disassemble(code)
    assert assemble(text) == code, text
    assert finalize(insns) == code


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(llvm_corpus()), min_size=1, max_size=60))
def test_generated_programs_agree_with_llvm_mc_and_round_trip(llvm_mc, lines):
    want = b"".join(llvm_mc(lines))
    assert assemble("\n".join(lines)) == want
    assert assemble(disassemble(want)) == want


def test_random_bytes_never_crash_the_lenient_disassembler():
    import random

    rng = random.Random(1)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(8 * rng.randrange(1, 6)))
        text = disassemble(blob, lenient=True)
        assert text.count("\n") >= 1
        try:
            disassemble(blob)
        except AsmError:
            pass
        struct.unpack_from("<BBhi", blob)
