"""Small programs the link tests attach: each proves it ran by writing into a map given as fd_array[0]."""

from __future__ import annotations

from pybpfguard.bpf.asm import BPF_DW, BPF_W, R0, R1, R2, R10, Insn
from pybpfguard.bpf.program import ProgramSpec
from pybpfguard.bpf.types import AttachType, ProgType


def count_into_slot0(name: str, prog_type: ProgType, **spec: object) -> ProgramSpec:
    """``counter[0] += 1`` on every run; returns 0."""
    insns = [
        Insn.st_mem(BPF_W, R10, -4, 0),
        Insn.ld_map_idx(R1, 0),
        Insn.mov64_reg(R2, R10),
        Insn.alu64_imm("add", R2, -4),
        Insn.call("map_lookup_elem"),
        Insn.jmp_imm("jeq", R0, 0, to="out"),
        Insn.mov64_imm(R1, 1),
        Insn.atomic("add", BPF_DW, R0, R1, 0),
        Insn.mov64_imm(R0, 0).labelled("out"),
        Insn.exit(),
    ]
    return ProgramSpec(name, prog_type, insns, **spec)  # type: ignore[arg-type]


def deny_connect4_to_port(port: int) -> ProgramSpec:
    """cgroup connect4: refuse (return 0, connect() fails with EPERM) connects to loopback *port* only.
    ``struct bpf_sock_addr``: ``user_port`` at +24, network byte order in the low 16 bits (docs/kernel.md)."""
    port_be = int.from_bytes(port.to_bytes(2, "big"), "little")
    insns = [
        Insn.ldx_mem(BPF_W, R2, R1, 24),
        Insn.jmp_imm("jne", R2, port_be, to="allow"),
        Insn.mov64_imm(R0, 0),
        Insn.exit(),
        Insn.mov64_imm(R0, 1).labelled("allow"),
        Insn.exit(),
    ]
    return ProgramSpec(
        "deny_port",
        ProgType.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        insns,
        expected_attach_type=AttachType.BPF_CGROUP_INET4_CONNECT,
    )
