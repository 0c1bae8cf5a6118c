"""STYLE §1: the library never imports the agent (another tool imports pybpfguard.bpf alone)."""

import subprocess
import sys

LIBRARY_MODULES = [
    "pybpfguard.bpf", "pybpfguard.bpf.asm", "pybpfguard.bpf.asm.text", "pybpfguard.bpf.asm.disasm",
    "pybpfguard.bpf.btf", "pybpfguard.bpf.layout", "pybpfguard.bpf.maps", "pybpfguard.bpf.program",
    "pybpfguard.bpf.link", "pybpfguard.bpf.iter", "pybpfguard.bpf.ringbuf", "pybpfguard.bpf.features",
    "pybpfguard.bpf.cpus", "pybpfguard.bpf.errors",
]


def test_importing_the_whole_library_loads_no_agent_or_cli_module():
    code = ("import importlib, sys\n"
            f"for m in {LIBRARY_MODULES!r}: importlib.import_module(m)\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith(('pybpfguard.agent', 'pybpfguard.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_daemon_imports_no_program_generator_and_names_no_map():
    """Sensors own programs and maps (docs/architecture.md "Sensors"); the daemon only runs them."""
    import ast
    from pathlib import Path

    import pybpfguard.agent.daemon as daemon
    from pybpfguard.agent.maps import pinned_specs
    from pybpfguard.agent.sensors import private_specs

    tree = ast.parse(Path(daemon.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    generators = {m for m in imported if m and m.startswith("pybpfguard.agent.programs.")}
    assert generators <= {"pybpfguard.agent.programs.emit", "pybpfguard.agent.programs.load"}
    names = set(pinned_specs()) | set(private_specs(4096))
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not names & strings
