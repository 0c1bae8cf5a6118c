"""The daemon only runs sensors (docs/architecture.md "Sensors"): it imports no program generator and
names no map, so a new sensor never edits it."""

from __future__ import annotations

import ast
from pathlib import Path

import pybpfguard.agent.daemon as daemon
from pybpfguard.agent.maps import pinned_specs
from pybpfguard.agent.sensors import private_specs


def test_the_daemon_imports_no_program_generator_and_names_no_map():
    tree = ast.parse(Path(daemon.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    generators = {m for m in imported if m and m.startswith("pybpfguard.agent.programs.")}
    assert generators <= {"pybpfguard.agent.programs.emit", "pybpfguard.agent.programs.load"}
    names = set(pinned_specs()) | set(private_specs(4096))
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not names & strings
