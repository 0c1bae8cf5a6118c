"""Pieces of the deny decision (docs/enforcement.md) that the LSM generators share.

``file_open`` (file_lsm.py) and ``bprm_check_security`` (exec_lsm.py) emit the same steps: read the agent
configuration, build the inode key, look up ``deny_inode`` / ``survival_allowlist`` / ``allow_cgroup``,
decide audit or enforce, send the configured signal with TERM->KILL escalation, and write a ``block``
record (sampling, a drop counter when the ring is full) before the verdict.

Register contract of every routine here: R9 holds the ``agent_config`` value (set by
:func:`load_config`), R6 is the caller's (not touched), R7 and R8 are scratch, R0..R5 are clobbered.

Rule sets: every policy map exists twice (pybpfguard/agent/maps.py); :func:`load_config` reads the
``rule_set`` selector once into :data:`SET_OFF` and :func:`lookup_rule` looks a key up in that set's map,
so one run of a hook decides against one complete set even while ``policy apply`` switches sets. A
program's ``fd_array`` lists both sets' maps (:func:`rule_maps`).
Labels: the routines jump to ``allow`` (return 0, defined by :func:`block_event_and_verdict`) and
define their own (``denied``, ``sig_*``; ``emit``, ``reserve``, ``fill``, ``verdict``, ``allow`` under a
*scope* prefix): each routine once per program, :func:`block_event_and_verdict` once per scope.
Stack slots sit below ``process.CNT_KEY_OFF`` and are listed here so a caller can put its own below
:data:`STACK_END`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from pybpfguard.agent.decision import RULE_FLAGS
from pybpfguard.agent.events.records import BLOCK, PATH_MAX, ActionCode, RecordFlags, RecordType
from pybpfguard.agent.maps import AGENT_CONFIG, BLOCK_STATS, CGROUP_INODE_KEY, INODE_KEY, RULE_SETS, set_map_name
from pybpfguard.agent.programs.emit import Emitter, KernelLayout
from pybpfguard.agent.programs.process import CNT_KEY_OFF, VAL_OFF, copy_identity, file_inode, proc_identity
from pybpfguard.bpf.asm import (
    BPF_ADD,
    BPF_B,
    BPF_DW,
    BPF_H,
    BPF_JEQ,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGT,
    BPF_MOD,
    BPF_MUL,
    BPF_SUB,
    BPF_W,
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R8,
    R9,
    R10,
    BpfFunc,
    Insn,
)
from pybpfguard.bpf.layout import Layout

#: ``enforce_signal_state`` key and value: the escalation window of one (pid, start_time).
SIGNAL_STATE_KEY = Layout("signal_state_key", [("pid", "u32"), ("pad", "u32"), ("start_time", "u64")])
SIGNAL_STATE = Layout("signal_state", [("window_start_ns", "u64"), ("strikes", "u32"), ("pad", "u32")])

SIGKILL, SIGTERM = 9, 15  # include/uapi/asm-generic/signal.h

INODE_OFF = CNT_KEY_OFF - 8 - INODE_KEY.size  # inode key on the stack
CGID_OFF = INODE_OFF - 8
SIGKEY_OFF = CGID_OFF - SIGNAL_STATE_KEY.size
SIGVAL_OFF = SIGKEY_OFF - SIGNAL_STATE.size
ACTION_OFF = SIGVAL_OFF - 8  # u64 slot: the ActionCode chosen
SET_OFF = ACTION_OFF - 8  # u64 slot: the live rule set, 0 or 1
CG_KEY_OFF = SET_OFF - CGROUP_INODE_KEY.size  # deny_cgroup_inode key {cgid, ino, dev, pad}
STACK_END = CG_KEY_OFF  # callers' own slots go below this

#: The rule-set maps the file decision reads (both sets of each go in the program's ``fd_array``).
FILE_RULE_MAPS = ("deny_inode", "allow_cgroup", "deny_cgroup_inode")

#: Writes the record's path tail: called with the reserved record in R7; must set ``path_len``.
PathWriter = Callable[[Emitter], None]
#: Sets R3 and R4 for a path writer that runs in the shared subprogram (``block_event_and_verdict``).
PathArgs = Callable[[Emitter], None]


def config(e: Emitter, dst: int, field: str) -> None:
    """``dst = agent_config.<field>`` (u8 or u32 by layout); R9 holds the config value pointer."""
    f = AGENT_CONFIG.field(field)
    size = {1: BPF_B, 4: BPF_W, 8: BPF_DW}[f.size]
    e(Insn.ldx_mem(size, dst, R9, f.offset))


def rule_maps(*names: str) -> tuple[str, ...]:
    """The ``fd_array`` names of rule-set maps *names*: each in set 0 and set 1 (``deny_inode``,
    ``deny_inode_1``), plus the ``rule_set`` selector."""
    return (*(set_map_name(n, i) for n in names for i in range(RULE_SETS)), "rule_set")


def load_config(e: Emitter) -> None:
    """R9 = the ``agent_config`` value (no configuration jumps to ``allow``); the live rule set at SET_OFF
    (no selector reads as set 0)."""
    e(Insn.st_mem(BPF_W, R10, CNT_KEY_OFF, 0))
    e.lookup("agent_config", CNT_KEY_OFF)
    e(Insn.jmp_imm(BPF_JEQ, R0, 0, to="allow"), Insn.mov64_reg(R9, R0))
    e.lookup("rule_set", CNT_KEY_OFF)
    found = e.fresh("set_found")
    e(Insn.mov64_imm(R1, 0), Insn.jmp_imm(BPF_JEQ, R0, 0, to=found), Insn.ldx_mem(BPF_W, R1, R0, 0))
    e.label(found)
    e(Insn.stx_mem(BPF_DW, R10, R1, SET_OFF).noted("the live rule set"))


def lookup_rule(e: Emitter, name: str, key_off: int) -> None:
    """``r0 = bpf_map_lookup_elem(&<name of the live set>, fp + key_off)``: set 1's map when SET_OFF holds
    1, else set 0's (the selector is read once per run by :func:`load_config`)."""
    other, join = e.fresh("set1"), e.fresh("set_map")
    e(Insn.ldx_mem(BPF_DW, R1, R10, SET_OFF), Insn.jmp_imm(BPF_JNE, R1, 0, to=other))
    e.map_ref(R1, set_map_name(name, 0))
    e(Insn.ja(join))
    e.label(other)
    e.map_ref(R1, set_map_name(name, 1))
    e.label(join)
    e(Insn.mov64_reg(R2, R10), Insn.alu64_imm(BPF_ADD, R2, key_off), Insn.call(BpfFunc.map_lookup_elem))


def current_cgid(e: Emitter) -> None:
    """CGID_OFF = ``bpf_get_current_cgroup_id()``."""
    e(Insn.call(BpfFunc.get_current_cgroup_id), Insn.stx_mem(BPF_DW, R10, R0, CGID_OFF))


def inode_key(e: Emitter, k: KernelLayout, file: int) -> None:
    """The inode key ``{ino, dev, pad}`` of the ``struct file *`` in *file* at :data:`INODE_OFF`."""
    file_inode(e, k, file, INODE_OFF + INODE_KEY.offset("ino"), INODE_OFF + INODE_KEY.offset("dev"))
    e(Insn.st_mem(BPF_W, R10, INODE_OFF + INODE_KEY.offset("pad"), 0))


def deny_inode_match(e: Emitter, miss: str) -> None:
    """Steps 2 to 4 of the file decision (pybpfguard/agent/decision.py) on the inode key at INODE_OFF:
    a cgroup-scoped rule (``deny_cgroup_inode[{cgid, inode}]``) or a global one (``deny_inode[key]`` with a
    rule bit, :data:`~pybpfguard.agent.decision.RULE_FLAGS`), else jump to *miss*; an ``allow_cgroup``
    member is exempt from the global rule only; a survival inode from both (jump to ``allow``). Falls
    through on a match; CGID_OFF is set. A protect-only rule goes on as DENY_ALWAYS: its exemption
    (VERIFIED_EXEC) applies to no process yet, so no step checks it here."""
    current_cgid(e)
    e(Insn.ldx_mem(BPF_DW, R2, R10, CGID_OFF), Insn.stx_mem(BPF_DW, R10, R2, CG_KEY_OFF),
      Insn.ldx_mem(BPF_DW, R2, R10, INODE_OFF), Insn.stx_mem(BPF_DW, R10, R2, CG_KEY_OFF + 8),
      Insn.ldx_mem(BPF_DW, R2, R10, INODE_OFF + 8), Insn.stx_mem(BPF_DW, R10, R2, CG_KEY_OFF + 16))
    lookup_rule(e, "deny_cgroup_inode", CG_KEY_OFF)
    e(Insn.jmp_imm(BPF_JNE, R0, 0, to="cg_denied"))
    lookup_rule(e, "deny_inode", INODE_OFF)
    e(Insn.jmp_imm(BPF_JEQ, R0, 0, to=miss),
      Insn.ldx_mem(BPF_B, R2, R0, 0), Insn.jmp_imm(BPF_JSET, R2, RULE_FLAGS, to="denied"),
      Insn.ja(miss))
    e.label("denied")
    lookup_rule(e, "allow_cgroup", CGID_OFF)
    e(Insn.jmp_imm(BPF_JNE, R0, 0, to="allow"))
    e.label("cg_denied")
    e.lookup("survival_allowlist", INODE_OFF)
    e(Insn.jmp_imm(BPF_JNE, R0, 0, to="allow"))


def effective_audit(e: Emitter, to: str) -> None:
    """ACTION = AUDIT, and jump to *to* when audit_only, emergency_disable or break_glass_active is set."""
    e(Insn.st_mem(BPF_DW, R10, ACTION_OFF, ActionCode.AUDIT))
    for name in ("audit_only", "emergency_disable", "break_glass_active"):
        config(e, R2, name)
        e(Insn.jmp_imm(BPF_JNE, R2, 0, to=to))


def signal(e: Emitter) -> None:
    """Send the configured signal; KILL escalates from TERM per (pid, start_time). Sets the action slot.

    Needs the PROC_INFO of the current process at ``VAL_OFF`` (pid, start_time)."""
    e(Insn.st_mem(BPF_DW, R10, ACTION_OFF, ActionCode.BLOCK))
    config(e, R8, "enforce_signal")
    e(Insn.jmp_imm(BPF_JEQ, R8, 0, to="sig_done"),
      Insn.jmp_imm(BPF_JEQ, R8, SIGKILL, to="sig_kill"))
    # TERM or INT: sent as configured, never escalated
    e(Insn.st_mem(BPF_DW, R10, ACTION_OFF, ActionCode.TERM),
      Insn.jmp_imm(BPF_JEQ, R8, SIGTERM, to="sig_send"),
      Insn.st_mem(BPF_DW, R10, ACTION_OFF, ActionCode.INT),
      Insn.ja("sig_send"))
    e.label("sig_kill")
    e(Insn.ldx_mem(BPF_W, R2, R10, VAL_OFF), Insn.stx_mem(BPF_W, R10, R2, SIGKEY_OFF),
      Insn.st_mem(BPF_W, R10, SIGKEY_OFF + 4, 0),
      Insn.ldx_mem(BPF_DW, R2, R10, VAL_OFF + 8), Insn.stx_mem(BPF_DW, R10, R2, SIGKEY_OFF + 8),
      Insn.call(BpfFunc.ktime_get_ns), Insn.mov64_reg(R7, R0))
    e.lookup("enforce_signal_state", SIGKEY_OFF)
    e(Insn.jmp_imm(BPF_JEQ, R0, 0, to="sig_new_window"))
    config(e, R2, "sigkill_escalation_window_seconds")
    e(Insn.alu64_imm(BPF_MUL, R2, 1_000_000_000),
      Insn.ldx_mem(BPF_DW, R3, R0, SIGNAL_STATE.offset("window_start_ns")),
      Insn.alu64_reg(BPF_ADD, R3, R2), Insn.jmp_reg(BPF_JGT, R7, R3, to="sig_new_window"),
      Insn.mov64_imm(R2, 1), Insn.atomic(BPF_ADD, BPF_W, R0, R2, SIGNAL_STATE.offset("strikes"), fetch=True),
      Insn.alu64_imm(BPF_ADD, R2, 1), Insn.ja("sig_strikes"))
    e.label("sig_new_window")
    e(Insn.stx_mem(BPF_DW, R10, R7, SIGVAL_OFF + SIGNAL_STATE.offset("window_start_ns")),
      Insn.st_mem(BPF_W, R10, SIGVAL_OFF + SIGNAL_STATE.offset("strikes"), 1),
      Insn.st_mem(BPF_W, R10, SIGVAL_OFF + SIGNAL_STATE.offset("pad"), 0))
    e.update("enforce_signal_state", SIGKEY_OFF, SIGVAL_OFF, 0)
    e(Insn.mov64_imm(R2, 1))
    e.label("sig_strikes")
    config(e, R3, "sigkill_escalation_threshold")
    e(Insn.mov64_imm(R8, SIGTERM), Insn.st_mem(BPF_DW, R10, ACTION_OFF, ActionCode.TERM),
      Insn.jmp_reg(BPF_JLT, R2, R3, to="sig_send"),
      Insn.mov64_imm(R8, SIGKILL), Insn.st_mem(BPF_DW, R10, ACTION_OFF, ActionCode.KILL))
    e.label("sig_send")
    e(Insn.mov64_reg(R1, R8), Insn.call(BpfFunc.send_signal))
    e.label("sig_done")


def block_event_and_verdict(e: Emitter, write_path: PathWriter, scope: str = "", *, tail_bytes: int = PATH_MAX,
                            eperm: bool = True, path_args: PathArgs | None = None, then: str | None = None) -> None:
    """From label ``<scope>emit``: sample, reserve a ``block`` record of BLOCK.size + *tail_bytes* bytes (a
    full ring counts ``ringbuf_drops``), fill identity (PROC_INFO at VAL_OFF), ino/dev (INODE_OFF), cgid,
    action, comm, the path (*write_path*), submit; then return -EPERM unless the action is AUDIT, and define
    ``<scope>allow`` (return 0). *scope* prefixes every label defined here, so one program can emit two
    decisions. *tail_bytes*: record room for the path (a writer may need more than PATH_MAX, as
    ``dpath.emit_path`` does). ``eperm=False`` (tracing programs, whose return value the kernel ignores):
    both outcomes return 0.

    *path_args* given: the record, from sampling to submit, is a call of the bpf-to-bpf subprogram
    :data:`BLOCK_RECORD` (:func:`_block_record`), so a program that reports two decisions lists it once.
    *path_args* sets R3 and R4, which *write_path* then finds at :data:`PATH_ARG_OFFS` of the subprogram's
    frame; every call in one program must pass the same *write_path* and *tail_bytes* (ValueError
    otherwise). The subprogram submits the record itself: a ringbuf reference returned from a subprogram
    is refused by 6.1 ("Unreleased reference").

    *then*: the ``verdict`` label of an earlier call in this program, to jump to after the record instead of
    defining ``<scope>verdict`` and ``<scope>allow`` again (a second decision whose verdict is the same)."""
    emit, reserve, fill, verdict, allow = (f"{scope}{name}" for name in ("emit", "reserve", "fill", "verdict", "allow"))
    if then is not None:
        verdict = then
    e.label(emit)
    if path_args is None:
        _reserve_and_fill(e, R10, tail_bytes, reserve=reserve, fill=fill, none=verdict)
        write_path(e)
        e(Insn.mov64_reg(R1, R7), Insn.mov64_imm(R2, 0), Insn.call(BpfFunc.ringbuf_submit))
    else:
        e.subprogram(BLOCK_RECORD, lambda sub: _block_record(sub, write_path, tail_bytes), key=(write_path, tail_bytes))
        path_args(e)
        e(Insn.mov64_reg(R1, R10), Insn.mov64_reg(R2, R9), Insn.call_local(BLOCK_RECORD))
    if then is not None:
        e(Insn.ja(then))
        return
    e.label(verdict)
    if eperm:
        e(Insn.ldx_mem(BPF_DW, R2, R10, ACTION_OFF), Insn.jmp_imm(BPF_JEQ, R2, ActionCode.AUDIT, to=allow),
          Insn.mov64_imm(R0, -errno.EPERM), Insn.exit())
    e.label(allow)
    e(Insn.mov64_imm(R0, 0), Insn.exit())


#: the label of the shared record emission (``block_event_and_verdict(path_args=...)``)
BLOCK_RECORD = "block_record"
#: where the subprogram keeps its R3 and R4 (the path writer's inputs), in its own frame
PATH_ARG_OFFS = (-8, -16)


def _block_record(e: Emitter, write_path: PathWriter, tail_bytes: int) -> None:
    """Subprogram: R1 = the caller's frame pointer (its stack slots are read through it), R2 = the
    ``agent_config`` value, R3 and R4 = the inputs of *write_path* (kept at :data:`PATH_ARG_OFFS`).
    Samples, reserves, fills, writes the path and submits; returns 0."""
    done = f"{BLOCK_RECORD}_done"
    e(Insn.mov64_reg(R6, R1).noted("the caller's frame"), Insn.mov64_reg(R9, R2).noted("agent_config"),
      Insn.stx_mem(BPF_DW, R10, R3, PATH_ARG_OFFS[0]), Insn.stx_mem(BPF_DW, R10, R4, PATH_ARG_OFFS[1]))
    _reserve_and_fill(e, R6, tail_bytes, reserve=f"{BLOCK_RECORD}_reserve", fill=f"{BLOCK_RECORD}_fill", none=done)
    write_path(e)
    e(Insn.mov64_reg(R1, R7), Insn.mov64_imm(R2, 0), Insn.call(BpfFunc.ringbuf_submit))
    e.label(done)
    e(Insn.mov64_imm(R0, 0), Insn.exit())


def _reserve_and_fill(e: Emitter, frame: int, tail_bytes: int, *, reserve: str, fill: str, none: str) -> None:
    """Sample, reserve the record into R7 (a full ring counts ``ringbuf_drops``; both jump to *none*) and
    fill all but its path from the slots below *frame* (R10, or the caller's frame in a subprogram);
    R9 holds the ``agent_config`` value."""
    config(e, R2, "event_sample_rate")
    e(Insn.jmp_imm(BPF_JLE, R2, 1, to=reserve), Insn.mov64_reg(R8, R2), Insn.call(BpfFunc.get_prandom_u32),
      Insn.alu64_reg(BPF_MOD, R0, R8), Insn.jmp_imm(BPF_JNE, R0, 0, to=none))
    e.label(reserve)
    e.map_ref(R1, "events")
    e(Insn.mov64_imm(R2, BLOCK.size + tail_bytes), Insn.mov64_imm(R3, 0), Insn.call(BpfFunc.ringbuf_reserve),
      Insn.mov64_reg(R7, R0), Insn.jmp_imm(BPF_JNE, R7, 0, to=fill))
    e.count("block_stats", BLOCK_STATS.offset("ringbuf_drops"), CNT_KEY_OFF)
    e(Insn.ja(none))
    e.label(fill)
    e(Insn.st_mem(BPF_W, R7, BLOCK.offset("type"), RecordType.BLOCK),
      Insn.st_mem(BPF_H, R7, BLOCK.offset("flags"), 0))
    copy_identity(e, R7, frame)
    for name, size in (("ino", BPF_DW), ("dev", BPF_W)):
        e(Insn.ldx_mem(size, R2, frame, INODE_OFF + INODE_KEY.offset(name)),
          Insn.stx_mem(size, R7, R2, BLOCK.offset(name)))
    e(Insn.ldx_mem(BPF_DW, R2, frame, CGID_OFF), Insn.stx_mem(BPF_DW, R7, R2, BLOCK.offset("cgid")),
      Insn.ldx_mem(BPF_DW, R2, frame, ACTION_OFF), Insn.stx_mem(BPF_W, R7, R2, BLOCK.offset("action")),
      Insn.mov64_reg(R1, R7), Insn.alu64_imm(BPF_ADD, R1, BLOCK.offset("comm")), Insn.mov64_imm(R2, 16),
      Insn.call(BpfFunc.get_current_comm))


def string_path_len(e: Emitter) -> None:
    """After a helper wrote the record's path as a string (R0 = its bytes with the NUL, or an error):
    ``path_len`` = R0 - 1, or an empty path with ``REC_F_PATH_TRUNCATED``. The record is in R7."""
    ok = e.fresh("path_ok")
    e(Insn.jmp_imm(BPF_JSGT, R0, 0, to=ok),
      Insn.st_mem(BPF_H, R7, BLOCK.offset("flags"), RecordFlags.REC_F_PATH_TRUNCATED), Insn.mov64_imm(R0, 1))
    e.label(ok)
    e(Insn.alu64_imm(BPF_SUB, R0, 1), Insn.stx_mem(BPF_H, R7, R0, BLOCK.offset("path_len")))


def count_and_identify(e: Emitter, k: KernelLayout) -> None:
    """Count the match in ``block_stats.blocks`` and read the current process's identity (PROC_INFO at
    VAL_OFF), as every rule of an LSM hook does once it matched."""
    e.count("block_stats", BLOCK_STATS.offset("blocks"), CNT_KEY_OFF)
    e(Insn.call(BpfFunc.get_current_task_btf), Insn.mov64_reg(R7, R0))
    proc_identity(e, k, R7)


def enforce_and_report(e: Emitter, k: KernelLayout, write_path: PathWriter, *,
                       path_args: PathArgs | None = None) -> None:
    """Step 6 for an LSM hook after a match: count it, identify the current process (PROC_INFO at VAL_OFF),
    audit or enforce with the configured signal, then the ``block`` record and the verdict
    (:func:`block_event_and_verdict`, with *path_args*)."""
    count_and_identify(e, k)
    effective_audit(e, to="emit")
    signal(e)
    block_event_and_verdict(e, write_path, path_args=path_args)
