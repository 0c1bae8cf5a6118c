"""The BPF library: nothing in here knows about the agent.

Modules, one kernel concept each (imports only point down):

- ``asm``: instructions, builder, text assembler and disassembler, helper table
- ``btf``: reading kernel BTF, writing program BTF
- ``maps``, ``program``, ``link``, ``ringbuf``, ``features``: kernel objects
- ``elf``: clang-built ELF objects loaded as libbpf loads them (docs/library.md)
- ``_sys``: the only code that issues ``bpf()`` and related syscalls
"""
