"""pybpfguard: a runtime security agent for Linux in pure Python.

``pybpfguard.bpf`` is the library (instruction set, BTF, maps, programs, links, ring buffer);
it knows nothing of the agent. The agent (``pybpfguard.agent``) and the command line
(``pybpfguard.cli``) sit on top of it.
"""

__version__ = "0.1.0"
