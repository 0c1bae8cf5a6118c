"""Process tracking and exec telemetry programs (docs/enforcement.md ``exec``, ``fork``, ``exit``).

- ``exec`` (tp_btf/sched_process_exec): writes the ``exec`` and ``exec_argv`` records and (re)sets the
  process entry, from the kernel's own view after a successful exec (``bprm->file``, not the user string).
  With ``--enforce-fallback=signal`` the daemon loads it with the exec signal fallback appended
  (:mod:`.exec_fallback`); without, that block is not generated, so the verifier does not walk it
  (~10k fewer verified insns, ~13 ms of start-up on 6.18).
- ``fork`` (tp_btf/sched_process_fork): a new *process* (child pid == tgid) gets its entry; new threads
  are ignored, so thread churn never grows the map.
- ``exit`` (tp_btf/sched_process_exit): the entry is removed only when the whole thread group is dead
  (``signal->live`` reached 0); a thread's exit never removes its process.
- ``procseed`` (iter/task): run once at start-up to enter processes that existed before the agent, so
  their events carry the kernel's start times too (tests/daemon/test_agent_cases.py, case 11).

The process entry (``procs``: LRU_HASH, u32 tgid -> PROC_INFO) is the one identity every event path
uses: start times are the kernel's ``task->start_time`` of the group leader (ns since boot).
"""

from __future__ import annotations

from pybpfguard.agent.events.records import ANCESTORS_MAX, ARGS_MAX, EXEC, EXEC_ARGV, RecordType
from pybpfguard.agent.programs import dpath
from pybpfguard.agent.programs.emit import AgentProgram, Emitter, KernelLayout
from pybpfguard.bpf.asm import (
    BPF_ADD,
    BPF_B,
    BPF_DW,
    BPF_H,
    BPF_JEQ,
    BPF_JLE,
    BPF_JNE,
    BPF_JSGE,
    BPF_SUB,
    BPF_W,
    R0,
    R1,
    R2,
    R3,
    R6,
    R7,
    R8,
    R9,
    R10,
    BpfFunc,
    Insn,
)
from pybpfguard.bpf.layout import Layout

#: ``procs`` map value (ours; docs/maps.md).
PROC_INFO = Layout("proc_info", [
    ("pid", "u32"),
    ("ppid", "u32"),
    ("start_time", "u64"),
    ("parent_start_time", "u64"),
    ("exec_ino", "u64"),
    ("exec_dev", "u32"),
    ("flags", "u32"),
])

BLOCK_STATS_DROPS = 8  # offset of ringbuf_drops in block_stats {u64 blocks, u64 ringbuf_drops}
BPF_ANY, BPF_NOEXIST = 0, 1  # include/uapi/linux/bpf.h map update flags

KEY_OFF = -8  # u32 tgid key on the stack
VAL_OFF = -8 - PROC_INFO.size  # PROC_INFO on the stack
CNT_KEY_OFF = VAL_OFF - 8
_DPATH_OFF = CNT_KEY_OFF - dpath.STACK_BYTES  # the exec path walk's stack (dpath.emit_path)


def proc_identity(e: Emitter, k: KernelLayout, task: int) -> None:
    """Fill PROC_INFO on the stack (pid, ppid, both start times) for *task*, a group leader."""
    e.load(R2, task, k, "task_struct", "tgid")
    e(Insn.stx_mem(BPF_W, R10, R2, VAL_OFF + PROC_INFO.offset("pid")),
      Insn.stx_mem(BPF_W, R10, R2, KEY_OFF))
    e.load(R3, task, k, "task_struct", "group_leader")
    e.load(R2, R3, k, "task_struct", "start_time")
    e(Insn.stx_mem(BPF_DW, R10, R2, VAL_OFF + PROC_INFO.offset("start_time")))
    e.load(R3, task, k, "task_struct", "real_parent")
    e.load(R2, R3, k, "task_struct", "tgid")
    e(Insn.stx_mem(BPF_W, R10, R2, VAL_OFF + PROC_INFO.offset("ppid")))
    e.load(R3, R3, k, "task_struct", "group_leader")
    e.load(R2, R3, k, "task_struct", "start_time")
    e(Insn.stx_mem(BPF_DW, R10, R2, VAL_OFF + PROC_INFO.offset("parent_start_time")),
      Insn.st_mem(BPF_W, R10, VAL_OFF + PROC_INFO.offset("flags"), 0))


def file_inode(e: Emitter, k: KernelLayout, file: int, ino_off: int, dev_off: int) -> None:
    """Store the inode number (u64) and device (u32, ``sb->s_dev``) of the ``struct file *`` in *file* at
    stack offsets *ino_off* and *dev_off* (NULL pointers read as 0). Clobbers R2, R3."""
    e.load(R2, file, k, "file", "f_inode")
    e.load(R3, R2, k, "inode", "i_ino")
    e(Insn.stx_mem(BPF_DW, R10, R3, ino_off))
    e.load(R3, R2, k, "inode", "i_sb")
    e.load(R3, R3, k, "super_block", "s_dev")
    e(Insn.stx_mem(BPF_W, R10, R3, dev_off))


def exec_inode_from_file(e: Emitter, k: KernelLayout, file: int) -> None:
    """exec_ino/exec_dev of PROC_INFO on the stack from a ``struct file *`` in *file*."""
    file_inode(e, k, file, VAL_OFF + PROC_INFO.offset("exec_ino"), VAL_OFF + PROC_INFO.offset("exec_dev"))


def copy_identity(e: Emitter, rec: int, frame: int = R10) -> None:
    """Copy pid, ppid and start times from the stacked PROC_INFO into the record at *rec*; *frame* holds
    the frame pointer of the program that stacked it (R10, or its copy in a subprogram)."""
    for name, size in (("pid", BPF_W), ("ppid", BPF_W), ("start_time", BPF_DW), ("parent_start_time", BPF_DW)):
        e(Insn.ldx_mem(size, R2, frame, VAL_OFF + PROC_INFO.offset(name)),
          Insn.stx_mem(size, rec, R2, EXEC.offset(name)))


def exec_telemetry_program(k: KernelLayout) -> AgentProgram:
    """The exec program as the daemon loads it unless ``--enforce-fallback=signal``: the ``exec`` and
    ``exec_argv`` records and the process entry, no fallback block (:func:`exec_program`)."""
    return exec_program(k, signal_fallback=False)


def exec_program(k: KernelLayout, *, signal_fallback: bool = True) -> AgentProgram:
    """tp_btf/sched_process_exec: ctx = (struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm).

    After the ``exec`` and ``exec_argv`` records, with *signal_fallback* the exec signal fallback decides on
    the exec'd inode when ``agent_config.signal_fallback_enforce`` is set (:mod:`.exec_fallback`; its maps
    follow ``procs``, ``events``, ``block_stats`` in the program's map list). Without, the program ends
    there; the daemon arms the fallback only in a program generated with it."""
    fallback_maps: tuple[str, ...] = ()
    if signal_fallback:
        # exec_fallback builds on this module's stack layout (through deny); imported here, when the program
        # is generated, so the module graph stays acyclic
        from pybpfguard.agent.programs import exec_fallback

        fallback_maps = exec_fallback.MAPS
    e = Emitter(maps=("procs", "events", "block_stats", *fallback_maps))
    e.arg(R6, 0, "struct task_struct *p")
    e.arg(R9, 2, "struct linux_binprm *bprm")
    proc_identity(e, k, R6)
    e.load(R1, R9, k, "linux_binprm", "file")
    exec_inode_from_file(e, k, R1)
    e.update("procs", KEY_OFF, VAL_OFF, BPF_ANY)

    # exec record: fixed part, then the executable's absolute path (bprm->file->f_path, walked in BPF)
    e.map_ref(R1, "events")
    e(Insn.mov64_imm(R2, EXEC.size + dpath.PATH_TAIL_BYTES), Insn.mov64_imm(R3, 0), Insn.call(BpfFunc.ringbuf_reserve),
      Insn.mov64_reg(R7, R0), Insn.jmp_imm(BPF_JEQ, R7, 0, to="exec_drop"),
      Insn.st_mem(BPF_W, R7, EXEC.offset("type"), RecordType.EXEC),
      Insn.st_mem(BPF_H, R7, EXEC.offset("flags"), 0),
      Insn.st_mem(BPF_H, R7, EXEC.offset("path_len"), 0))
    copy_identity(e, R7)
    e(Insn.ldx_mem(BPF_DW, R2, R10, VAL_OFF + PROC_INFO.offset("exec_ino")),
      Insn.stx_mem(BPF_DW, R7, R2, EXEC.offset("ino")),
      Insn.ldx_mem(BPF_W, R2, R10, VAL_OFF + PROC_INFO.offset("exec_dev")),
      Insn.stx_mem(BPF_W, R7, R2, EXEC.offset("dev")),
      Insn.st_mem(BPF_W, R7, EXEC.offset("ancestor_count"), 0))  # count + 3 pad bytes
    for i in range(ANCESTORS_MAX):
        e(Insn.st_mem(BPF_W, R7, EXEC.offset("ancestors") + 4 * i, 0))
    e(Insn.call(BpfFunc.get_current_cgroup_id), Insn.stx_mem(BPF_DW, R7, R0, EXEC.offset("cgid")),
      Insn.mov64_reg(R1, R7), Insn.alu64_imm(BPF_ADD, R1, EXEC.offset("comm")), Insn.mov64_imm(R2, 16),
      Insn.call(BpfFunc.get_current_comm))
    # ancestors: the grandparent first, up to 8, stopping before the first pid <= 1
    e.load(R8, R6, k, "task_struct", "real_parent")
    for i in range(ANCESTORS_MAX):
        e.load(R8, R8, k, "task_struct", "real_parent")
        e.load(R2, R8, k, "task_struct", "tgid")
        e(Insn.jmp_imm(BPF_JLE, R2, 1, to="anc_done"),
          Insn.stx_mem(BPF_W, R7, R2, EXEC.offset("ancestors") + 4 * i),
          Insn.st_mem(BPF_B, R7, EXEC.offset("ancestor_count"), i + 1))
    e.label("anc_done")
    e.load(R1, R9, k, "linux_binprm", "file")
    e.member_addr(R1, k, "file", "f_path")
    record_path = {"rec": R7, "path": R1, "tail_off": EXEC.size, "len_off": EXEC.offset("path_len"),
                   "flags_off": EXEC.offset("flags")}
    if signal_fallback:  # the fallback's block record walks the same path: one subprogram for both
        dpath.call_path(e, k, **record_path)
    else:
        dpath.emit_path(e, k, **record_path, stack=_DPATH_OFF)
    e(Insn.mov64_reg(R1, R7), Insn.mov64_imm(R2, 0), Insn.call(BpfFunc.ringbuf_submit), Insn.ja("argv"))
    e.label("exec_drop")
    e.count("block_stats", BLOCK_STATS_DROPS, CNT_KEY_OFF)

    # exec_argv record: the argument area as the new image sees it (bounded; argc says how many there are)
    e.label("argv")
    e.map_ref(R1, "events")
    e(Insn.mov64_imm(R2, EXEC_ARGV.size + ARGS_MAX), Insn.mov64_imm(R3, 0), Insn.call(BpfFunc.ringbuf_reserve),
      Insn.mov64_reg(R7, R0), Insn.jmp_imm(BPF_JEQ, R7, 0, to="argv_drop"),
      Insn.st_mem(BPF_W, R7, EXEC_ARGV.offset("type"), RecordType.EXEC_ARGV),
      Insn.ldx_mem(BPF_W, R2, R10, VAL_OFF + PROC_INFO.offset("pid")),
      Insn.stx_mem(BPF_W, R7, R2, EXEC_ARGV.offset("pid")),
      Insn.ldx_mem(BPF_DW, R2, R10, VAL_OFF + PROC_INFO.offset("start_time")),
      Insn.stx_mem(BPF_DW, R7, R2, EXEC_ARGV.offset("start_time")),
      Insn.st_mem(BPF_H, R7, EXEC_ARGV.offset("flags"), 0))
    e.load(R2, R9, k, "linux_binprm", "argc")
    e(Insn.stx_mem(BPF_W, R7, R2, EXEC_ARGV.offset("argc")))
    e.load(R8, R6, k, "task_struct", "mm")
    e.load(R3, R8, k, "mm_struct", "arg_start")
    e.load(R2, R8, k, "mm_struct", "arg_end")
    e(Insn.alu64_reg(BPF_SUB, R2, R3),
      Insn.jmp_imm(BPF_JSGE, R2, 0, to="len_pos"), Insn.mov64_imm(R2, 0))
    e.label("len_pos")
    e(Insn.jmp_imm(BPF_JLE, R2, ARGS_MAX, to="len_ok"), Insn.mov64_imm(R2, ARGS_MAX))
    e.label("len_ok")
    e(Insn.stx_mem(BPF_H, R7, R2, EXEC_ARGV.offset("args_len")),
      Insn.mov64_reg(R1, R7), Insn.alu64_imm(BPF_ADD, R1, EXEC_ARGV.size),
      Insn.call(BpfFunc.probe_read_user),
      Insn.jmp_imm(BPF_JEQ, R0, 0, to="argv_submit"),
      Insn.st_mem(BPF_H, R7, EXEC_ARGV.offset("args_len"), 0))  # unreadable: say so, keep argc
    e.label("argv_submit")
    e(Insn.mov64_reg(R1, R7), Insn.mov64_imm(R2, 0), Insn.call(BpfFunc.ringbuf_submit), Insn.ja("fallback"))
    e.label("argv_drop")
    e.count("block_stats", BLOCK_STATS_DROPS, CNT_KEY_OFF)
    e.label("fallback")
    if signal_fallback:
        exec_fallback.signal_fallback(e, k, bprm=R9)
    else:
        e(Insn.mov64_imm(R0, 0), Insn.exit())
    return e.program("exec", "tracing", "tp_btf/sched_process_exec")


def _enter_leader(e: Emitter, k: KernelLayout, task: int, update_flags: int) -> None:
    """Enter *task* in procs when it leads its thread group (threads never get an entry), its image the
    one its mm runs (a forked child runs its parent's until it execs)."""
    e.load(R2, task, k, "task_struct", "pid")
    e.load(R3, task, k, "task_struct", "tgid")
    e(Insn.jmp_reg(BPF_JNE, R2, R3, to="out"))
    proc_identity(e, k, task)
    e.load(R1, task, k, "task_struct", "mm")
    e.load(R1, R1, k, "mm_struct", "exe_file")
    exec_inode_from_file(e, k, R1)
    e.update("procs", KEY_OFF, VAL_OFF, update_flags)
    e.label("out")
    e(Insn.mov64_imm(R0, 0), Insn.exit())


def fork_program(k: KernelLayout) -> AgentProgram:
    """tp_btf/sched_process_fork: ctx = (struct task_struct *parent, struct task_struct *child)."""
    e = Emitter(maps=("procs",))
    e.arg(R6, 1, "struct task_struct *child")
    _enter_leader(e, k, R6, BPF_ANY)
    return e.program("fork", "tracing", "tp_btf/sched_process_fork")


def exit_program(k: KernelLayout) -> AgentProgram:
    """tp_btf/sched_process_exit: ctx = (struct task_struct *p, ...). Removes the entry when the group is dead."""
    e = Emitter(maps=("procs",))
    e.arg(R6, 0, "struct task_struct *p")
    e.load(R2, R6, k, "task_struct", "signal")
    e.load(R2, R2, k, "signal_struct", "live")  # atomic_t: int counter at offset 0
    e(Insn.jmp_imm(BPF_JNE, R2, 0, to="out"))
    e.load(R2, R6, k, "task_struct", "tgid")
    e(Insn.stx_mem(BPF_W, R10, R2, KEY_OFF))
    e.map_ref(R1, "procs")
    e(Insn.mov64_reg(R2, R10), Insn.alu64_imm(BPF_ADD, R2, KEY_OFF), Insn.call(BpfFunc.map_delete_elem))
    e.label("out")
    e(Insn.mov64_imm(R0, 0), Insn.exit())
    return e.program("exit", "tracing", "tp_btf/sched_process_exit")


def procseed_program(k: KernelLayout) -> AgentProgram:
    """iter/task: ctx = struct bpf_iter__task {meta, task}. Enters every process not yet tracked."""
    e = Emitter(maps=("procs",))
    e.arg(R6, 1, "bpf_iter__task.task")  # after the iterator's meta pointer
    e(Insn.jmp_imm(BPF_JEQ, R6, 0, to="out"))
    _enter_leader(e, k, R6, BPF_NOEXIST)  # never overwrite what fork/exec recorded
    return e.program("procseed", "tracing", "iter/task")
