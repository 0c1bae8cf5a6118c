"""The exec program's two variants: the default one (no signal-fallback block, what the daemon loads unless
``--enforce-fallback=signal``) and the one with the fallback appended; both verify on this kernel."""

from __future__ import annotations

import pytest

from pybpfguard.agent.programs import PROGRAMS
from pybpfguard.agent.programs.exec_fallback import MAPS as FALLBACK_MAPS
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.programs.process import exec_program, exec_telemetry_program


def test_default_exec_program_has_no_fallback_block_and_no_fallback_maps(kernel_layout):
    default, full = exec_telemetry_program(kernel_layout), exec_program(kernel_layout)
    assert default.maps == ("procs", "events", "block_stats")
    assert full.maps == ("procs", "events", "block_stats", *FALLBACK_MAPS)
    assert exec_program(kernel_layout, signal_fallback=False) == default
    # everything up to the fallback label is the same code; the default ends there with `return 0`
    cut = next(i for i, insn in enumerate(full.insns) if "fallback" in insn.labels)
    assert default.insns[:cut] == full.insns[:cut]
    assert len(default.insns) == cut + 2 and len(full.insns) > cut + 100


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
