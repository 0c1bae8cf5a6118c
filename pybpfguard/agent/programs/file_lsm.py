"""The ``file_open`` LSM program: the file decision of docs/enforcement.md in the kernel.

Order: policy-empty hint -> cgroup-scoped and global inode rules of the live rule set (no match: allow) ->
allow_cgroup (global rules only) -> survival allowlist ->
count -> (enforce) signal with TERM->KILL escalation -> event with the opened file's real path
(``bpf_d_path(&file->f_path)``) -> ``-EPERM`` in enforce, 0 in audit. A full ring only increments
``block_stats.ringbuf_drops``; the decision never depends on the ring. The steps shared with
``bprm_check_security`` live in :mod:`.deny`.
"""

from __future__ import annotations

from pybpfguard.agent.events.records import BLOCK, PATH_MAX
from pybpfguard.agent.programs import deny
from pybpfguard.agent.programs.emit import AgentProgram, Emitter, KernelLayout
from pybpfguard.bpf.asm import BPF_ADD, BPF_JNE, R1, R2, R3, R6, R7, BpfFunc, Insn


def d_path_of(k: KernelLayout, file: int) -> deny.PathWriter:
    """A path writer: ``bpf_d_path(&file->f_path)`` (LSM hooks that allow it, 5.10) into the record in R7.

    *file* is a callee-saved register holding the ``struct file *``. A failure (``-ENAMETOOLONG``) leaves
    an empty path with ``REC_F_PATH_TRUNCATED``."""
    def write(e: Emitter) -> None:
        e(Insn.mov64_reg(R1, file))
        e.member_addr(R1, k, "file", "f_path")
        e(Insn.mov64_reg(R2, R7), Insn.alu64_imm(BPF_ADD, R2, BLOCK.size), Insn.mov64_imm(R3, PATH_MAX),
          Insn.call(BpfFunc.d_path))
        deny.string_path_len(e)
    return write


def file_open_program(k: KernelLayout) -> AgentProgram:
    """lsm/file_open: ctx = (struct file *file). Returns 0 or -EPERM."""
    e = Emitter(maps=("agent_config", *deny.rule_maps(*deny.FILE_RULE_MAPS), "survival_allowlist", "block_stats",
                      "enforce_signal_state", "events"))
    e.arg(R6, 0, "struct file *file")
    deny.load_config(e)
    deny.config(e, R2, "file_policy_empty")
    e(Insn.jmp_imm(BPF_JNE, R2, 0, to="allow"))
    deny.inode_key(e, k, R6)
    deny.deny_inode_match(e, miss="allow")
    deny.enforce_and_report(e, k, d_path_of(k, R6))
    return e.program("file_open", "lsm", "lsm/file_open")
