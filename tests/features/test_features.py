"""Feature probes against the real kernel, two-sided where the kernel version decides (STYLE §8)."""

from __future__ import annotations

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


def test_probes_for_features_older_than_this_kernel_say_available_except_known_refusals():
    refused_here = {  # KERNEL.md: this host refuses trampolines (LSM, fentry); d_path is LSM/fentry-only
        "prog_type BPF_PROG_TYPE_LSM",
        "attach fentry",
        "bpf_lsm usable",
        "helper d_path in BPF_PROG_TYPE_TRACING",
    }
    for result in features.probe_all():
        if result.name in refused_here or not result.min_kernel:
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
