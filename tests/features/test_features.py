"""Feature probes against the real kernel, two-sided where the kernel version decides (STYLE docs/architecture.md)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from pybpfguard.bpf import features
from pybpfguard.bpf.features import Status
from pybpfguard.bpf.types import LinkType, ProgType

pytestmark = pytest.mark.kernel


def _kernel_at_least(version: str) -> bool:
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    return release >= tuple(int(x) for x in version.split("."))


TRAMPOLINE_PROBES = {"prog_type BPF_PROG_TYPE_LSM", "attach fentry", "bpf_lsm usable"}


def _kernel_refuses_trampolines() -> bool:
    """Asked of the kernel itself, not of the probes under test: does loading a bare fentry program fail with
    EPERM before the verifier says anything? (The sandbox host's hardening; mainline loads it.)"""
    from pybpfguard.bpf.asm import R0, Insn
    from pybpfguard.bpf.errors import SyscallError
    from pybpfguard.bpf.program import Program, ProgramSpec
    from pybpfguard.bpf.types import AttachType

    spec = ProgramSpec("trampoline", ProgType.BPF_PROG_TYPE_TRACING, (Insn.mov64_imm(R0, 0), Insn.exit()),
                       expected_attach_type=AttachType.BPF_TRACE_FENTRY, attach_to="do_unlinkat")
    try:
        Program.load(spec).close()
    except SyscallError as err:
        return err.errno == errno.EPERM and not (getattr(err, "log", "") or "").strip()
    return False


def test_probes_for_features_older_than_this_kernel_say_available_except_what_this_host_refuses():
    # Exempt only what the kernel at hand really refuses, and then the probes must say so (two-sided).
    refused_here = TRAMPOLINE_PROBES if _kernel_refuses_trampolines() else set()
    by_name = {result.name: result for result in features.probe_all()}
    for name in refused_here:
        assert by_name[name].status is Status.UNSUPPORTED and "EPERM" in by_name[name].reason, by_name[name]
    for result in by_name.values():
        if result.name in refused_here or not result.min_kernel:
            continue
        if result.name == "helper d_path in BPF_PROG_TYPE_TRACING":
            # The probe program is tp_btf, which no kernel lets call bpf_d_path (only LSM programs and
            # fentry/fexit on the functions of btf_allowlist_d_path, kernel/trace/bpf_trace.c).
            assert result.status is Status.UNSUPPORTED and "not allowed" in result.reason, result
            continue
        if _kernel_at_least(result.min_kernel):
            assert result.status is Status.AVAILABLE, result


def test_isa_v4_probe_loads_a_v4_only_instruction_and_is_cached():
    features.clear_cache()
    first = features.isa(4)
    assert first.status is (Status.AVAILABLE if _kernel_at_least("6.6") else Status.UNSUPPORTED)
    assert features.isa(4) is first  # decided answers are cached


def test_helper_refused_for_a_program_type_is_unsupported_with_the_verifier_reason():
    result = features.helper(ProgType.BPF_PROG_TYPE_TRACING, "d_path")  # tp_btf: "not allowed in probe"
    assert result.status is Status.UNSUPPORTED and "not allowed" in result.reason


def test_bpf_lsm_probe_agrees_with_loading_a_real_lsm_program():
    result = features.bpf_lsm()
    prog_type = features.prog_type(ProgType.BPF_PROG_TYPE_LSM)
    if not prog_type.available:  # this host: trampolines refused, so BPF LSM is not usable whatever the list says
        assert result.status is Status.UNSUPPORTED and "EPERM" in result.reason
        with pytest.raises(features.NotSupportedError):
            result.require()
    else:  # a kernel that runs LSM programs: only the LSM list can still say no
        assert result.status is Status.AVAILABLE or "LSM list" in result.reason


def test_link_type_probes_find_cgroup_and_perf_event_links_on_this_kernel():
    assert features.link_type(LinkType.BPF_LINK_TYPE_CGROUP).available is _kernel_at_least("5.7")
    assert features.link_type(LinkType.BPF_LINK_TYPE_PERF_EVENT).available is _kernel_at_least("5.15")


def test_inconclusive_answers_are_not_cached(monkeypatch):
    calls = []

    def ask():
        calls.append(1)
        return Status.INCONCLUSIVE, "no answer"

    features._probe("test inconclusive", "", ask)
    features._probe("test inconclusive", "", ask)
    assert len(calls) == 2


def test_probe_command_prints_a_table_and_json():
    table = subprocess.run([sys.executable, "-m", "pybpfguard", "probe"], capture_output=True, text=True, timeout=60)
    assert "FEATURE" in table.stdout and "isa v4" in table.stdout, table.stderr
    out = subprocess.run(
        [sys.executable, "-m", "pybpfguard", "probe", "--json"], capture_output=True, text=True, timeout=60
    )
    rows = json.loads(out.stdout)
    by_name = {row["name"]: row for row in rows}
    assert by_name["map_type BPF_MAP_TYPE_RINGBUF"] == {
        "name": "map_type BPF_MAP_TYPE_RINGBUF",
        "status": "available",
        "min_kernel": "5.8",
        "reason": "created",
    }
