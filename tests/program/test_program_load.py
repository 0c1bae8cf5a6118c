"""Program loading against the real kernel: the verifier log never decides the outcome,
rejections are one-line errors carrying the whole log, and the kernel's own view of a loaded program."""

from __future__ import annotations

import errno
import json
import subprocess

import pytest

from pybpfguard.bpf.asm import BPF_W, R0, R1, R2, R3, Insn
from pybpfguard.bpf.errors import VerifierError
from pybpfguard.bpf.program import Program, ProgramSpec
from pybpfguard.bpf.types import ProgType

pytestmark = pytest.mark.kernel

SOCKET_FILTER = ProgType.BPF_PROG_TYPE_SOCKET_FILTER
RET_7 = ProgramSpec("ret7", SOCKET_FILTER, [Insn.mov64_imm(R0, 7), Insn.exit()])
# r2 = *(u32 *)(ctx + 0) is a scalar; dereferencing it is "R2 invalid mem access 'scalar'" at insn 1.
DEREF_SCALAR = ProgramSpec(
    "deref_scalar",
    SOCKET_FILTER,
    [Insn.ldx_mem(BPF_W, R2, R1, 0), Insn.ldx_mem(BPF_W, R3, R2, 0), Insn.mov64_imm(R0, 0), Insn.exit()],
)


def test_valid_program_loads_although_the_requested_log_buffer_is_far_too_small():
    with Program.load(RET_7, log_level=2, log_size_bytes=16) as prog:
        assert prog.test_run(bytes(64)).retval == 7
        assert "processed 2 insns" in prog.verifier_log  # the log grew to its true size, nothing cut


def test_rejected_program_raises_one_line_summary_with_failing_insn_and_verifier_words():
    with pytest.raises(VerifierError) as info:
        Program.load(DEREF_SCALAR)
    err = info.value
    text = str(err)
    assert "\n" not in text
    assert text.startswith("BPF_PROG_LOAD deref_scalar: EACCES at insn 1 (r3 = *(u32 *)(r2 + 0)): ")
    assert "R2 invalid mem access 'scalar'" in text and "more lines in .log)" in text
    assert err.errno == errno.EACCES and err.insn_index == 1
    assert "processed 2 insns" in err.log and "0: (61) r2 = *(u32 *)(r1 +0)" in err.log


def test_rejection_with_a_tiny_initial_log_buffer_reports_the_verifier_error_not_enospc():
    with pytest.raises(VerifierError) as info:
        Program.load(DEREF_SCALAR, log_level=1, log_size_bytes=16)
    assert info.value.errno == errno.EACCES
    assert "R2 invalid mem access 'scalar'" in info.value.log and "processed" in info.value.log


def test_program_without_r0_fails_at_its_exit_insn():
    with pytest.raises(VerifierError) as info:
        Program.load(ProgramSpec("no_r0", SOCKET_FILTER, [Insn.exit()]))
    assert info.value.insn_index == 0 and "at insn 0 (exit): R0 !read_ok" in str(info.value)


def test_program_info_matches_bpftool():
    with Program.load(RET_7) as prog:
        info = prog.info()
        shown = json.loads(
            subprocess.run(
                ["bpftool", "-j", "prog", "show", "id", str(info.id)], check=True, capture_output=True, text=True
            ).stdout
        )
    assert (info.name, info.tag, info.prog_type) == (shown["name"], shown["tag"], SOCKET_FILTER)
    assert shown["type"] == "socket_filter" and info.verified_insns == 2


def test_test_run_repeats_and_returns_r0_of_the_program():
    with Program.load(RET_7) as prog:
        result = prog.test_run(bytes(64), repeat=100)
    assert result.retval == 7 and result.duration_ns >= 0


def test_reopened_by_id_program_is_the_same_kernel_object():
    with Program.load(RET_7) as prog, Program.from_id(RET_7, prog.info().id) as again:
        assert again.info().tag == prog.info().tag and again.fd.raw != prog.fd.raw
