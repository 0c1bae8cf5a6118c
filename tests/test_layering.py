"""STYLE §1: the library never imports the agent (another tool imports pybpfguard.bpf alone).

Every module of the library is found by walking the package, so a new module is checked without being
listed here."""

import subprocess
import sys

LIBRARY = "pybpfguard.bpf"
FORBIDDEN = ("pybpfguard.agent", "pybpfguard.cli")

# In a fresh interpreter: import every module under LIBRARY (walk_packages imports each package to find
# its children), then print them and, after a separator, every forbidden module that got loaded.
_WALK = f"""
import importlib, pkgutil, sys
lib = importlib.import_module({LIBRARY!r})
found = [lib.__name__]
for info in pkgutil.walk_packages(lib.__path__, lib.__name__ + "."):
    importlib.import_module(info.name)
    found.append(info.name)
print("\\n".join(found))
print("--")
print("\\n".join(m for m in sys.modules if m.startswith({FORBIDDEN!r})))
"""


def _walk() -> tuple[list[str], list[str]]:
    out = subprocess.run([sys.executable, "-c", _WALK], capture_output=True, text=True, check=True).stdout
    found, _, loaded = out.partition("--\n")
    return found.split(), loaded.split()


def test_importing_the_whole_library_loads_no_agent_or_cli_module():
    found, loaded = _walk()
    # the walk reaches subpackages and private modules too, not just the top level
    assert {"pybpfguard.bpf.asm.text", "pybpfguard.bpf.btf", "pybpfguard.bpf.maps", "pybpfguard.bpf.ringbuf",
            "pybpfguard.bpf._sys"} <= set(found)
    assert loaded == []
