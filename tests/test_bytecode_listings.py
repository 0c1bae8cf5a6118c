"""bytecode/: each listing equals its generator's output on the recorded layout, assembles (its map names
mapped back to fd_array indexes) through our assembler and llvm-mc-19 to the same bytes, and the example
program runs in the kernel."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys

import pytest
from elftools.elf.elffile import ELFFile

from pybpfguard.agent import listing
from pybpfguard.agent.programs import PROGRAMS
from pybpfguard.bpf._sys import map_create, prog_load, prog_test_run
from pybpfguard.bpf.asm import BPF_DW, BPF_W, R0, R1, R2, R10, Insn, assemble, finalize, plain

_PSEUDO = re.compile(r"= (map_fd|map_value|btf_id|map_idx|map_idx_value)\((\d+)(?:, (\d+))?\) ll")


def _llvm_spelling(text: str) -> str:
    """LLVM has no syntax for pseudo ld_imm64 sources: write their value as a plain 64-bit constant."""
    return _PSEUDO.sub(lambda m: f"= {int(m.group(3) or 0) << 32 | int(m.group(2))} ll", text)


def _without_pseudo_src(code: bytes) -> bytes:
    """*code* with the src_reg nibble of every ld_imm64 cleared (the part LLVM cannot spell)."""
    out = bytearray(code)
    i = 0
    while i < len(out):
        if out[i] == 0x18:
            out[i + 1] &= 0x0F
            i += 16
        else:
            i += 8
    return bytes(out)


def test_every_listing_equals_its_generator_output_on_the_recorded_layout():
    assert listing.stale() == [], "run `python -m pybpfguard bytecode --write`"
    assert {f"{name}.s" for name in PROGRAMS} == {p.name for p in listing.BYTECODE_DIR.glob("*.s")}


def test_bytecode_check_command_fails_on_a_stale_listing(tmp_path):
    shutil.copy(listing.BYTECODE_DIR / listing.LAYOUT_FILE, tmp_path)
    cmd = [sys.executable, "-m", "pybpfguard", "bytecode", "--dir", str(tmp_path)]
    assert subprocess.run([*cmd, "--check"], capture_output=True, check=False).returncode == 1
    assert subprocess.run([*cmd, "--write"], capture_output=True, check=False).returncode == 0
    assert subprocess.run([*cmd, "--check"], capture_output=True, check=False).returncode == 0
    (tmp_path / "socket_counter.s").write_text("\texit\n")
    out = subprocess.run([*cmd, "--check"], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "socket_counter.s: differs" in out.stderr


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_listing_assembles_through_llvm_mc_to_the_generator_bytes(name, tmp_path):
    if shutil.which("llvm-mc-19") is None:
        pytest.skip("llvm-mc-19 not installed (apt-get install llvm-19)")
    layout, _ = listing.load_layout()
    want = finalize(PROGRAMS[name].generate(layout))
    text = plain((listing.BYTECODE_DIR / f"{name}.s").read_text())
    assert assemble(text) == want
    source, obj = tmp_path / f"{name}.s", tmp_path / f"{name}.o"
    source.write_text(_llvm_spelling(text))
    subprocess.run(
        ["llvm-mc-19", "-triple", "bpf", "-mcpu=v4", "-filetype=obj", str(source), "-o", str(obj)], check=True
    )
    with obj.open("rb") as f:
        llvm_bytes = ELFFile(f).get_section_by_name(".text").data()
    assert llvm_bytes == _without_pseudo_src(want)


@pytest.mark.kernel
def test_socket_counter_loads_and_counts_packets_and_bytes():
    BPF_MAP_TYPE_ARRAY, BPF_PROG_TYPE_SOCKET_FILTER = 2, 1  # include/uapi/linux/bpf.h
    layout, _ = listing.load_layout()
    counter = finalize(PROGRAMS["socket_counter"].generate(layout))
    read_back = finalize(
        [
            Insn.st_mem(BPF_W, R10, -4, 0),  # key 0
            Insn.mov64_reg(R2, R10),
            Insn.alu64_imm("add", R2, -4),
            Insn.ld_map_idx(R1, 0),
            Insn.call("map_lookup_elem"),
            Insn.jmp_imm("jeq", R0, 0, to="out"),
            Insn.ldx_mem(BPF_DW, R1, R0, 8),  # bytes
            Insn.ldx_mem(BPF_DW, R0, R0, 0),  # packets
            Insn.alu64_imm("lsh", R0, 16),
            Insn.alu64_reg("or", R0, R1),
            Insn.exit().labelled("out"),
        ]
    )
    with map_create(BPF_MAP_TYPE_ARRAY, 4, 16, 1, map_name=b"counters") as counters:
        fd_array = (ctypes.c_int * 1)(counters.raw)
        extra = {"fd_array": ctypes.addressof(fd_array)}
        with (
            prog_load(BPF_PROG_TYPE_SOCKET_FILTER, counter, b"GPL", prog_name=b"socket_counter", **extra) as prog,
            prog_load(BPF_PROG_TYPE_SOCKET_FILTER, read_back, b"GPL", prog_name=b"read_back", **extra) as reader,
        ):
            for size in (64, 100, 200):
                assert prog_test_run(prog, bytes(size)).retval == size - 14  # skb->len after the Ethernet header
            assert prog_test_run(reader, bytes(64)).retval == 3 << 16 | (50 + 86 + 186)
