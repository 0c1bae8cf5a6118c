"""Example generator for the listings machinery: a socket filter that counts packets and bytes.

Maps, in ``fd_array`` order (referred to by index, BPF_PSEUDO_MAP_IDX, so the listing never holds an fd):

0. ``counters``: BPF_MAP_TYPE_ARRAY, key u32 (always 0), value ``struct {u64 packets; u64 bytes}``.

Returns ``skb->len``: the whole packet is kept. Program type BPF_PROG_TYPE_SOCKET_FILTER, any license.
"""

from __future__ import annotations

from typing import Protocol

from pybpfguard.bpf.asm import BPF_ADD, BPF_DW, BPF_JEQ, BPF_W, R0, R1, R2, R6, R7, R10, BpfFunc, Insn

#: the kernel members this generator reads, for the recorded layout (include/uapi/linux/bpf.h)
MEMBERS = (("__sk_buff", "len"),)
MAPS = ("counters",)
COUNTERS_PACKETS = 0  # byte offset of u64 packets in the counters value
COUNTERS_BYTES = 8  # byte offset of u64 bytes


class KernelLayout(Protocol):
    """``offsetof(struct, member)`` in bytes: the running kernel's BTF, or the recorded layout."""

    def offsetof(self, type_name: str, path: str) -> int: ...


def socket_counter(layout: KernelLayout) -> list[Insn]:
    """Instructions of the packet/byte counter; *layout* gives ``offsetof(__sk_buff, len)``."""
    return [
        Insn.mov64_reg(R6, R1),  # r6 = ctx, kept across the helper call
        Insn.ldx_mem(BPF_W, R7, R6, layout.offsetof("__sk_buff", "len")),
        Insn.st_mem(BPF_W, R10, -4, 0),  # key 0 on the stack
        Insn.mov64_reg(R2, R10),
        Insn.alu64_imm(BPF_ADD, R2, -4),
        Insn.ld_map_idx(R1, MAPS.index("counters")),
        Insn.call(BpfFunc.map_lookup_elem),
        Insn.jmp_imm(BPF_JEQ, R0, 0, to="out"),
        Insn.mov64_imm(R1, 1),
        Insn.atomic(BPF_ADD, BPF_DW, R0, R1, COUNTERS_PACKETS),
        Insn.atomic(BPF_ADD, BPF_DW, R0, R7, COUNTERS_BYTES),
        Insn.mov64_reg(R0, R7).labelled("out"),
        Insn.exit(),
    ]
