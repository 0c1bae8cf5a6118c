"""Oracles for the instruction-set tests: llvm-mc-19 for bytes, the kernel (socket filter test runs) for
meaning. llvm-mc runs once per batch of lines, to keep the suite fast."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence

import pytest

from pybpfguard.bpf._sys import prog_load, prog_test_run
from pybpfguard.bpf.asm import Insn, finalize

LLVM_MC = "llvm-mc-19"
BPF_PROG_TYPE_SOCKET_FILTER = 1  # include/uapi/linux/bpf.h: enum bpf_prog_type
_ENCODING = re.compile(r"encoding: \[([^\]]*)\]")


def llvm_encode(lines: Sequence[str]) -> list[bytes]:
    """Assemble each line with ``llvm-mc-19 -triple bpf -mcpu=v4`` in one process; one bytes per line.
    Fails the test on any llvm-mc diagnostic (so the count always matches)."""
    out = subprocess.run(
        [LLVM_MC, "-triple", "bpf", "-mcpu=v4", "-show-encoding"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert not out.stderr, out.stderr[:2000]
    found = [bytes(int(x, 16) for x in m.split(",")) for m in _ENCODING.findall(out.stdout)]
    assert len(found) == len(lines), (len(found), len(lines))
    return found


@pytest.fixture(scope="session")
def llvm_mc() -> Callable[[Sequence[str]], list[bytes]]:
    """``llvm_mc(lines) -> [bytes per line]``; skips (fails under PYBPFGUARD_REQUIRE_KERNEL=1) without llvm-19."""
    if shutil.which(LLVM_MC) is None:
        pytest.skip(f"{LLVM_MC} not installed (apt-get install llvm-19)")
    return llvm_encode


def run_socket_filter(insns: Iterable[Insn], data: bytes = bytes(64)) -> int:
    """Load *insns* as a GPL socket filter, run it once on *data*, close it; return r0 as u32."""
    code = finalize(insns)
    with prog_load(BPF_PROG_TYPE_SOCKET_FILTER, code, b"GPL", prog_name=b"asm_test") as prog:
        return prog_test_run(prog, data).retval


@pytest.fixture
def run_filter(kernel: None) -> Callable[..., int]:
    """``run_filter(insns, data=bytes(64)) -> retval``: the kernel as the oracle of meaning."""
    return run_socket_filter
