"""The exec program's two variants: the default one (no signal-fallback block, what the daemon loads unless
``--enforce-fallback=signal``) and the one with the fallback appended; both verify on this kernel."""

from __future__ import annotations

import pytest

from pybpfguard.agent.programs import PROGRAMS, dpath
from pybpfguard.agent.programs.exec_fallback import MAPS as FALLBACK_MAPS
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.programs.process import exec_program, exec_telemetry_program


def test_default_exec_program_has_no_fallback_block_and_no_fallback_maps(kernel_layout):
    default, full = exec_telemetry_program(kernel_layout), exec_program(kernel_layout)
    assert default.maps == ("procs", "events", "block_stats")
    assert full.maps == ("procs", "events", "block_stats", *FALLBACK_MAPS)
    assert exec_program(kernel_layout, signal_fallback=False) == default
    # the same code up to the exec record's path walk: inline in the default, a call of the subprogram the
    # fallback's block record calls too in the full one; the default ends at `fallback` with `return 0`
    walk = next(i for i, insn in enumerate(default.insns) if insn.note == "&file->f_path") + 1
    assert default.insns[:walk] == full.insns[:walk]
    cut = next(i for i, insn in enumerate(default.insns) if "fallback" in insn.labels)
    full_cut = next(i for i, insn in enumerate(full.insns) if "fallback" in insn.labels)
    assert len(default.insns) == cut + 2 and len(full.insns) > full_cut + 100


def test_the_full_exec_program_walks_both_paths_in_one_subprogram(kernel_layout):
    default, full = exec_telemetry_program(kernel_layout), exec_program(kernel_layout)
    assert default.functions == () and full.functions == (dpath.SUBPROGRAM,)
    assert sum(insn.target == dpath.SUBPROGRAM for insn in full.insns) == 2
    assert sum(dpath.SUBPROGRAM in insn.labels for insn in full.insns) == 1


def test_registry_lists_the_default_exec_program_as_exec_and_the_fallback_variant_beside_it():
    assert PROGRAMS["exec"].function == "exec_telemetry_program"
    assert PROGRAMS["exec_signal_fallback"].function == "exec_program"
    assert PROGRAMS["exec"].members == PROGRAMS["exec_signal_fallback"].members


@pytest.mark.kernel
def test_both_exec_variants_verify_and_the_default_verifies_fewer_insns(kernel, kernel_layout, agent_maps):
    verified = {}
    for name, prog in (("default", exec_telemetry_program(kernel_layout)), ("full", exec_program(kernel_layout))):
        with load_program(prog, agent_maps) as loaded:
            verified[name] = loaded.info().verified_insns
    assert 0 < verified["default"] < verified["full"]
