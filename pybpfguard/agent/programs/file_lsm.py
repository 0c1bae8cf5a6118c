"""The ``file_open`` LSM program: the file decision of REFERENCE §3.5 in the kernel.

Order: policy-empty hint -> deny_inode lookup (no match: allow) -> survival allowlist -> allow_cgroup ->
count -> (enforce) signal with TERM->KILL escalation -> event with the opened file's real path
(``bpf_d_path(&file->f_path)``) -> ``-EPERM`` in enforce, 0 in audit. A full ring only increments
``block_stats.ringbuf_drops``; the decision never depends on the ring.
"""

from __future__ import annotations

import errno

from pybpfguard.agent.events.records import BLOCK, PATH_MAX, ActionCode, RecordFlags, RecordType
from pybpfguard.agent.maps import AGENT_CONFIG, BLOCK_STATS, DENY_ALWAYS, INODE_KEY
from pybpfguard.agent.programs.emit import AgentProgram, Emitter, KernelLayout
from pybpfguard.agent.programs.process import CNT_KEY_OFF, VAL_OFF, copy_identity, proc_identity
from pybpfguard.bpf.asm import BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R3, R6, R7, R8, R9, R10, Insn
from pybpfguard.bpf.layout import Layout

#: ``enforce_signal_state`` value: the escalation window of one (pid, start_time).
SIGNAL_STATE_KEY = Layout("signal_state_key", [("pid", "u32"), ("pad", "u32"), ("start_time", "u64")])
SIGNAL_STATE = Layout("signal_state", [("window_start_ns", "u64"), ("strikes", "u32"), ("pad", "u32")])

SIGKILL, SIGTERM = 9, 15

_INODE = CNT_KEY_OFF - 8 - INODE_KEY.size  # inode key on the stack
_CGID = _INODE - 8
_SIGKEY = _CGID - SIGNAL_STATE_KEY.size
_SIGVAL = _SIGKEY - SIGNAL_STATE.size
_ACTION = _SIGVAL - 8  # u64 slot: the ActionCode chosen


def _config(e: Emitter, dst: int, field: str) -> None:
    """``dst = agent_config.<field>`` (u8 or u32 by layout); R9 holds the config value pointer."""
    f = AGENT_CONFIG.field(field)
    size = {1: BPF_B, 4: BPF_W, 8: BPF_DW}[f.size]
    e(Insn.ldx_mem(size, dst, R9, f.offset))


def _signal(e: Emitter) -> None:
    """Send the configured signal; KILL escalates from TERM per (pid, start_time). Sets the action slot."""
    e(Insn.st_mem(BPF_DW, R10, _ACTION, ActionCode.BLOCK))
    _config(e, R8, "enforce_signal")
    e(Insn.jmp_imm("jeq", R8, 0, to="sig_done"),
      Insn.jmp_imm("jeq", R8, SIGKILL, to="sig_kill"))
    # TERM or INT: sent as configured, never escalated
    e(Insn.st_mem(BPF_DW, R10, _ACTION, ActionCode.TERM),
      Insn.jmp_imm("jeq", R8, SIGTERM, to="sig_send"),
      Insn.st_mem(BPF_DW, R10, _ACTION, ActionCode.INT),
      Insn.ja("sig_send"))
    e.label("sig_kill")
    e(Insn.ldx_mem(BPF_W, R2, R10, VAL_OFF), Insn.stx_mem(BPF_W, R10, R2, _SIGKEY),
      Insn.st_mem(BPF_W, R10, _SIGKEY + 4, 0),
      Insn.ldx_mem(BPF_DW, R2, R10, VAL_OFF + 8), Insn.stx_mem(BPF_DW, R10, R2, _SIGKEY + 8),
      Insn.call("ktime_get_ns"), Insn.mov64_reg(R7, R0))
    e.lookup("enforce_signal_state", _SIGKEY)
    e(Insn.jmp_imm("jeq", R0, 0, to="sig_new_window"))
    _config(e, R2, "sigkill_escalation_window_seconds")
    e(Insn.alu64_imm("mul", R2, 1_000_000_000),
      Insn.ldx_mem(BPF_DW, R3, R0, SIGNAL_STATE.offset("window_start_ns")),
      Insn.alu64_reg("add", R3, R2), Insn.jmp_reg("jgt", R7, R3, to="sig_new_window"),
      Insn.mov64_imm(R2, 1), Insn.atomic("add", BPF_W, R0, R2, SIGNAL_STATE.offset("strikes"), fetch=True),
      Insn.alu64_imm("add", R2, 1), Insn.ja("sig_strikes"))
    e.label("sig_new_window")
    e(Insn.stx_mem(BPF_DW, R10, R7, _SIGVAL + SIGNAL_STATE.offset("window_start_ns")),
      Insn.st_mem(BPF_W, R10, _SIGVAL + SIGNAL_STATE.offset("strikes"), 1),
      Insn.st_mem(BPF_W, R10, _SIGVAL + SIGNAL_STATE.offset("pad"), 0))
    e.update("enforce_signal_state", _SIGKEY, _SIGVAL, 0)
    e(Insn.mov64_imm(R2, 1))
    e.label("sig_strikes")
    _config(e, R3, "sigkill_escalation_threshold")
    e(Insn.mov64_imm(R8, SIGTERM), Insn.st_mem(BPF_DW, R10, _ACTION, ActionCode.TERM),
      Insn.jmp_reg("jlt", R2, R3, to="sig_send"),
      Insn.mov64_imm(R8, SIGKILL), Insn.st_mem(BPF_DW, R10, _ACTION, ActionCode.KILL))
    e.label("sig_send")
    e(Insn.mov64_reg(R1, R8), Insn.call("send_signal"))
    e.label("sig_done")


def file_open_program(k: KernelLayout) -> AgentProgram:
    """lsm/file_open: ctx = (struct file *file). Returns 0 or -EPERM."""
    e = Emitter(maps=("agent_config", "deny_inode", "survival_allowlist", "allow_cgroup", "block_stats",
                      "enforce_signal_state", "events"))
    e(Insn.ldx_mem(BPF_DW, R6, R1, 0), Insn.st_mem(BPF_W, R10, CNT_KEY_OFF, 0))
    e.lookup("agent_config", CNT_KEY_OFF)
    e(Insn.jmp_imm("jeq", R0, 0, to="allow"), Insn.mov64_reg(R9, R0))
    _config(e, R2, "file_policy_empty")
    e(Insn.jmp_imm("jne", R2, 0, to="allow"))
    # inode key {ino, dev, pad}
    e.load(R2, R6, k, "file", "f_inode")
    e.load(R3, R2, k, "inode", "i_ino")
    e(Insn.stx_mem(BPF_DW, R10, R3, _INODE + INODE_KEY.offset("ino")))
    e.load(R3, R2, k, "inode", "i_sb")
    e.load(R3, R3, k, "super_block", "s_dev", 4)
    e(Insn.stx_mem(BPF_W, R10, R3, _INODE + INODE_KEY.offset("dev")),
      Insn.st_mem(BPF_W, R10, _INODE + INODE_KEY.offset("pad"), 0))
    e.lookup("deny_inode", _INODE)
    e(Insn.jmp_imm("jeq", R0, 0, to="allow"),
      Insn.ldx_mem(BPF_B, R2, R0, 0), Insn.jmp_imm("jset", R2, DENY_ALWAYS, to="denied"),
      Insn.ja("allow"))  # protect-only rules need VERIFIED_EXEC tracking, not generated yet
    e.label("denied")
    e.lookup("survival_allowlist", _INODE)
    e(Insn.jmp_imm("jne", R0, 0, to="allow"),
      Insn.call("get_current_cgroup_id"), Insn.stx_mem(BPF_DW, R10, R0, _CGID))
    e.lookup("allow_cgroup", _CGID)
    e(Insn.jmp_imm("jne", R0, 0, to="allow"))
    e.count("block_stats", BLOCK_STATS.offset("blocks"), CNT_KEY_OFF)
    e(Insn.call("get_current_task_btf"), Insn.mov64_reg(R7, R0))
    proc_identity(e, k, R7)
    # effective audit: audit_only, emergency_disable or break_glass_active
    e(Insn.st_mem(BPF_DW, R10, _ACTION, ActionCode.AUDIT))
    for name in ("audit_only", "emergency_disable", "break_glass_active"):
        _config(e, R2, name)
        e(Insn.jmp_imm("jne", R2, 0, to="emit"))
    _signal(e)
    e.label("emit")
    _config(e, R2, "event_sample_rate")
    e(Insn.jmp_imm("jle", R2, 1, to="reserve"), Insn.mov64_reg(R8, R2), Insn.call("get_prandom_u32"),
      Insn.alu64_reg("mod", R0, R8), Insn.jmp_imm("jne", R0, 0, to="verdict"))
    e.label("reserve")
    e.map_ref(R1, "events")
    e(Insn.mov64_imm(R2, BLOCK.size + PATH_MAX), Insn.mov64_imm(R3, 0), Insn.call("ringbuf_reserve"),
      Insn.mov64_reg(R7, R0), Insn.jmp_imm("jne", R7, 0, to="fill"))
    e.count("block_stats", BLOCK_STATS.offset("ringbuf_drops"), CNT_KEY_OFF)
    e(Insn.ja("verdict"))
    e.label("fill")
    e(Insn.st_mem(BPF_W, R7, BLOCK.offset("type"), RecordType.BLOCK),
      Insn.st_mem(BPF_H, R7, BLOCK.offset("flags"), 0))
    copy_identity(e, R7)
    for name, size in (("ino", BPF_DW), ("dev", BPF_W)):
        e(Insn.ldx_mem(size, R2, R10, _INODE + INODE_KEY.offset(name)), Insn.stx_mem(size, R7, R2, BLOCK.offset(name)))
    e(Insn.ldx_mem(BPF_DW, R2, R10, _CGID), Insn.stx_mem(BPF_DW, R7, R2, BLOCK.offset("cgid")),
      Insn.ldx_mem(BPF_DW, R2, R10, _ACTION), Insn.stx_mem(BPF_W, R7, R2, BLOCK.offset("action")),
      Insn.mov64_reg(R1, R7), Insn.alu64_imm("add", R1, BLOCK.offset("comm")), Insn.mov64_imm(R2, 16),
      Insn.call("get_current_comm"),
      Insn.mov64_reg(R1, R6), Insn.alu64_imm("add", R1, k.offsetof("file", "f_path")),
      Insn.mov64_reg(R2, R7), Insn.alu64_imm("add", R2, BLOCK.size), Insn.mov64_imm(R3, PATH_MAX),
      Insn.call("d_path"),
      Insn.jmp_imm("jsgt", R0, 0, to="path_ok"),
      Insn.st_mem(BPF_H, R7, BLOCK.offset("flags"), RecordFlags.REC_F_PATH_TRUNCATED),
      Insn.mov64_imm(R0, 1))
    e.label("path_ok")
    e(Insn.alu64_imm("sub", R0, 1), Insn.stx_mem(BPF_H, R7, R0, BLOCK.offset("path_len")),
      Insn.mov64_reg(R1, R7), Insn.mov64_imm(R2, 0), Insn.call("ringbuf_submit"))
    e.label("verdict")
    e(Insn.ldx_mem(BPF_DW, R2, R10, _ACTION), Insn.jmp_imm("jeq", R2, ActionCode.AUDIT, to="allow"),
      Insn.mov64_imm(R0, -errno.EPERM), Insn.exit())
    e.label("allow")
    e(Insn.mov64_imm(R0, 0), Insn.exit())
    return e.program("file_open", "lsm", "lsm/file_open")
