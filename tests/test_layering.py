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
