"""LOADER.md case 9: where BPF LSM cannot work, loading or attaching an LSM program fails loudly with a
typed error saying why; it never attaches silently without effect."""

from __future__ import annotations

import errno

import pytest

from pybpfguard.bpf.asm import R0, Insn
from pybpfguard.bpf.errors import NotSupportedError, PermissionDeniedError
from pybpfguard.bpf.link import attach_lsm, attach_tracing
from pybpfguard.bpf.lsm_support import LSM_PATH_ENV, BPFLSMUnavailable, require_bpf_lsm_listed
from pybpfguard.bpf.program import Program, ProgramSpec
from pybpfguard.bpf.types import AttachType, LinkType, ProgType

RET_0 = [Insn.mov64_imm(R0, 0), Insn.exit()]
LSM_FILE_OPEN = ProgramSpec(
    "lsm_noop", ProgType.BPF_PROG_TYPE_LSM, RET_0, expected_attach_type=AttachType.BPF_LSM_MAC, attach_to="file_open"
)


@pytest.mark.kernel
def test_lsm_program_this_kernel_refuses_raises_bpf_lsm_unavailable_with_the_reason(lsm_list):
    listed = "bpf" in lsm_list.read_text().split(",")
    try:
        prog = Program.load(LSM_FILE_OPEN)
    except BPFLSMUnavailable as err:
        assert isinstance(err, NotSupportedError) and err.min_kernel == "5.7"
        assert err.errno == errno.EPERM and "trampolines refused with EPERM" in err.reason
        assert ("although 'bpf' is in the LSM list" in err.reason) == listed
        assert isinstance(err.__cause__, PermissionDeniedError)
        return
    # A kernel that runs BPF LSM (the VM tier): the program must really attach as an LSM link.
    with prog, attach_lsm(prog) as link:
        assert link.info().link_type == LinkType.BPF_LINK_TYPE_TRACING


def test_lsm_attach_is_refused_when_bpf_is_missing_from_the_lsm_list(tmp_path, monkeypatch):
    fake = tmp_path / "lsm"
    fake.write_text("lockdown,capability,landlock\n")
    monkeypatch.setenv(LSM_PATH_ENV, str(fake))
    with pytest.raises(BPFLSMUnavailable, match=r"'bpf' is missing from the active LSM list .*landlock"):
        require_bpf_lsm_listed()


def test_lsm_attach_is_refused_when_the_lsm_list_cannot_be_read(tmp_path, monkeypatch):
    monkeypatch.setenv(LSM_PATH_ENV, str(tmp_path / "absent"))
    with pytest.raises(BPFLSMUnavailable, match="cannot read the LSM list"):
        require_bpf_lsm_listed()


@pytest.mark.kernel
def test_fentry_refused_by_this_kernel_names_trampolines_in_the_hint():
    spec = ProgramSpec(
        "fentry_noop",
        ProgType.BPF_PROG_TYPE_TRACING,
        RET_0,
        expected_attach_type=AttachType.BPF_TRACE_FENTRY,
        attach_to="do_unlinkat",
    )
    try:
        prog = Program.load(spec)
    except PermissionDeniedError as err:
        assert "refuses BPF trampolines" in str(err) and "fentry_noop" in str(err)
        return
    with prog, attach_tracing(prog) as link:  # a kernel with trampolines
        assert link.info().link_type == LinkType.BPF_LINK_TYPE_TRACING


def test_errno_524_from_an_lsm_load_is_the_typed_not_supported_error_naming_trampolines():
    # kernels without BPF trampolines (e.g. some arm64 and older configs) answer ENOTSUPP (524); this host
    # answers EPERM, so the branch is checked on the classifier the loader and the attach path share
    import errno as _errno

    from pybpfguard.bpf.errors import ENOTSUPP, NotSupportedError
    from pybpfguard.bpf.lsm_support import lsm_refusal

    err = lsm_refusal(ENOTSUPP, "")
    assert isinstance(err, NotSupportedError) and err.errno == ENOTSUPP
    assert "errno 524" in str(err) and "trampoline" in str(err)
    assert lsm_refusal(_errno.EACCES, "R1 invalid mem access") is None  # a verifier rejection is not that
