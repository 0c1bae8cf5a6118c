"""The ``bprm_check_security`` LSM program: exec decisions (docs/enforcement.md ``bprm_check_security``).

Two rules, in this order:

1. A denied executable: ``deny_inode`` on ``bprm->file``'s inode, exactly as ``file_open`` decides
   (policy-empty hint, DENY_ALWAYS, survival allowlist, ``allow_cgroup``, audit or enforce, the configured
   signal with escalation); the ``block`` record's path is ``bpf_d_path(&bprm->file->f_path)``.
2. ``deny_comm`` on the basename of ``bprm->filename`` (the name the caller exec'd, from which the kernel
   takes the new ``comm``), checked after ``allow_cgroup`` (AegisBPF checks it first). The key is the
   basename NUL-padded to 16 bytes; a basename of 16 bytes or more never matches, so nothing matches on
   a cut name (tests/daemon/test_agent_cases.py, case 10). A survival binary is never denied. ``deny_comm``
   never signals: action
   ``BLOCK`` (enforce) or ``AUDIT``; the ``block`` record has ino = dev = 0 and path = ``bprm->filename``.
3. Allowlist mode: when the live rule set's ``allow_exec_inode`` holds
   :data:`~pybpfguard.agent.maps.ALLOWLIST_ON_KEY` (``policy apply`` of ``[allow_binary_hash]`` puts it
   there, so the mode switches with the set), an executable whose inode is not in ``allow_exec_inode``
   is denied unless the caller's cgroup is in ``allow_cgroup`` or the inode is on the survival allowlist;
   never signalled, like ``deny_comm``; the record names the file.

Returns ``-EPERM`` or 0. Needs BPF LSM (5.7) with ``bpf_d_path`` allowed in this hook (5.10).
"""

from __future__ import annotations

from pybpfguard.agent.events.records import BLOCK, PATH_MAX, TASK_COMM_LEN, ActionCode
from pybpfguard.agent.maps import INODE_KEY
from pybpfguard.agent.programs import deny
from pybpfguard.agent.programs.emit import AgentProgram, Emitter, KernelLayout
from pybpfguard.bpf.asm import (
    BPF_ADD,
    BPF_B,
    BPF_DW,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JNE,
    BPF_JSLE,
    BPF_SUB,
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R8,
    R10,
    BpfFunc,
    Insn,
)

_FILENAME = deny.STACK_END - 8  # bprm->filename (a kernel address)
_COMM_KEY = _FILENAME - TASK_COMM_LEN  # deny_comm key: basename, NUL-padded
_TAIL = _COMM_KEY - 16  # the last 16 bytes of the filename
_CHUNK = _TAIL - 128  # probe_read_kernel_str window used to find the filename's end
_CHUNK_BYTES = 128
_CHUNKS = (PATH_MAX + _CHUNK_BYTES - 2) // (_CHUNK_BYTES - 1)  # windows overlap by the NUL they end in


def _filename_length(e: Emitter, found: str, give_up: str) -> None:
    """R7 = strlen(bprm->filename) (the address is at _FILENAME), then jump to *found*; an unreadable or
    overlong string jumps to *give_up*. Reads windows of 128 bytes until one holds the NUL."""
    stride = _CHUNK_BYTES - 1  # a full window ends in the NUL the helper wrote, not in string bytes
    for i in range(_CHUNKS):
        e(Insn.mov64_reg(R1, R10), Insn.alu64_imm(BPF_ADD, R1, _CHUNK), Insn.mov64_imm(R2, _CHUNK_BYTES),
          Insn.ldx_mem(BPF_DW, R3, R10, _FILENAME), Insn.alu64_imm(BPF_ADD, R3, stride * i),
          Insn.call(BpfFunc.probe_read_kernel_str),
          Insn.jmp_imm(BPF_JSLE, R0, 0, to=give_up),
          Insn.mov64_reg(R7, R0), Insn.alu64_imm(BPF_ADD, R7, stride * i - 1),
          Insn.jmp_imm(BPF_JLT, R0, _CHUNK_BYTES, to=found))
    e(Insn.ja(give_up))


def _comm_key(e: Emitter, no_match: str) -> None:
    """The deny_comm key at _COMM_KEY from the basename of bprm->filename; *no_match* if it cannot match."""
    have_len, found = e.fresh("fn_len"), e.fresh("slash")
    _filename_length(e, have_len, no_match)
    e.label(have_len)
    # R8 = address of the last min(len, 16) bytes, R7 = how many: at most one basename that can match
    e(Insn.ldx_mem(BPF_DW, R8, R10, _FILENAME), Insn.jmp_imm(BPF_JLE, R7, 16, to=f"{have_len}_short"),
      Insn.alu64_reg(BPF_ADD, R8, R7), Insn.alu64_imm(BPF_SUB, R8, 16), Insn.mov64_imm(R7, 16))
    e.label(f"{have_len}_short")
    e(Insn.mov64_reg(R1, R10), Insn.alu64_imm(BPF_ADD, R1, _TAIL), Insn.mov64_imm(R2, 16),
      Insn.mov64_reg(R3, R8), Insn.call(BpfFunc.probe_read_kernel), Insn.jmp_imm(BPF_JNE, R0, 0, to=no_match))
    # the last '/' among the R7 bytes: the basename starts after it (R4 = its index + 1)
    for j in range(15, -1, -1):
        skip = e.fresh("noslash")
        e(Insn.jmp_imm(BPF_JLE, R7, j, to=skip), Insn.ldx_mem(BPF_B, R1, R10, _TAIL + j),
          Insn.jmp_imm(BPF_JNE, R1, ord("/"), to=skip), Insn.mov64_imm(R4, j + 1), Insn.ja(found))
        e.label(skip)
    # no '/': the whole name is the basename, which fits only when shorter than 16 bytes
    e(Insn.jmp_imm(BPF_JGE, R7, 16, to=no_match), Insn.mov64_imm(R4, 0))
    e.label(found)
    e(Insn.mov64_reg(R2, R7), Insn.alu64_reg(BPF_SUB, R2, R4),
      Insn.jmp_imm(BPF_JEQ, R2, 0, to=no_match), Insn.jmp_imm(BPF_JGT, R2, TASK_COMM_LEN - 1, to=no_match))
    e(Insn.st_mem(BPF_DW, R10, _COMM_KEY, 0), Insn.st_mem(BPF_DW, R10, _COMM_KEY + 8, 0),
      Insn.mov64_reg(R1, R10), Insn.alu64_imm(BPF_ADD, R1, _COMM_KEY),
      Insn.mov64_reg(R3, R8), Insn.alu64_reg(BPF_ADD, R3, R4), Insn.call(BpfFunc.probe_read_kernel),
      Insn.jmp_imm(BPF_JNE, R0, 0, to=no_match))


def _record_path(e: Emitter) -> None:
    """Path writer of both rules, run in the shared record subprogram (``deny.block_event_and_verdict``
    with *path_args*): ``bpf_d_path`` of the ``struct path`` given as R3 (:func:`_file_path_args`), or,
    R3 being 0, ``bprm->filename`` given as R4 (:func:`_filename_args`), cut at PATH_MAX - 1 bytes."""
    filename, written = e.fresh("path_filename"), e.fresh("path_written")
    path_off, filename_off = deny.PATH_ARG_OFFS
    e(Insn.ldx_mem(BPF_DW, R1, R10, path_off), Insn.jmp_imm(BPF_JEQ, R1, 0, to=filename),
      Insn.mov64_reg(R2, R7), Insn.alu64_imm(BPF_ADD, R2, BLOCK.size), Insn.mov64_imm(R3, PATH_MAX),
      Insn.call(BpfFunc.d_path), Insn.ja(written))
    e.label(filename)
    e(Insn.mov64_reg(R1, R7), Insn.alu64_imm(BPF_ADD, R1, BLOCK.size), Insn.mov64_imm(R2, PATH_MAX),
      Insn.ldx_mem(BPF_DW, R3, R10, filename_off), Insn.call(BpfFunc.probe_read_kernel_str))
    e.label(written)
    deny.string_path_len(e)


def _file_path_args(k: KernelLayout) -> deny.PathArgs:
    """:func:`_record_path` of the denied executable: R3 = ``&bprm->file->f_path`` (the file in R6)."""
    def args(e: Emitter) -> None:
        e(Insn.mov64_reg(R3, R6))
        e.member_addr(R3, k, "file", "f_path")
        e(Insn.mov64_imm(R4, 0))
    return args


def _filename_args(e: Emitter) -> None:
    """:func:`_record_path` of a deny_comm match: R3 = 0, R4 = ``bprm->filename``."""
    e(Insn.mov64_imm(R3, 0), Insn.ldx_mem(BPF_DW, R4, R10, _FILENAME))


def bprm_check_program(k: KernelLayout) -> AgentProgram:
    """lsm/bprm_check_security: ctx = (struct linux_binprm *bprm). Returns 0 or -EPERM."""
    e = Emitter(maps=("agent_config", *deny.rule_maps(*deny.FILE_RULE_MAPS, "deny_comm", "allow_exec_inode"),
                      "survival_allowlist", "block_stats", "enforce_signal_state", "events"))
    e.arg(R7, 0, "struct linux_binprm *bprm")
    e.load(R2, R7, k, "linux_binprm", "filename")
    e(Insn.stx_mem(BPF_DW, R10, R2, _FILENAME))
    e.load(R6, R7, k, "linux_binprm", "file")
    deny.load_config(e)
    deny.inode_key(e, k, R6)  # also the survival key of the comm rule
    deny.config(e, R2, "file_policy_empty")
    e(Insn.jmp_imm(BPF_JNE, R2, 0, to="comm"))
    deny.deny_inode_match(e, miss="comm")
    deny.enforce_and_report(e, k, _record_path, path_args=_file_path_args(k))

    # deny_comm: allow_cgroup first (it exempts the allowlist too), then the name, then the survival allowlist
    e.label("comm")
    deny.current_cgid(e)
    deny.lookup_rule(e, "allow_cgroup", deny.CGID_OFF)
    e(Insn.jmp_imm(BPF_JNE, R0, 0, to="allow"))
    _comm_key(e, no_match="allowlist")
    deny.lookup_rule(e, "deny_comm", _COMM_KEY)
    e(Insn.jmp_imm(BPF_JEQ, R0, 0, to="allowlist"))
    e.lookup("survival_allowlist", deny.INODE_OFF)
    e(Insn.jmp_imm(BPF_JNE, R0, 0, to="allow"))
    deny.count_and_identify(e, k)
    # the record names no inode: the rule is on the name
    e(Insn.st_mem(BPF_DW, R10, deny.INODE_OFF + INODE_KEY.offset("ino"), 0),
      Insn.st_mem(BPF_DW, R10, deny.INODE_OFF + INODE_KEY.offset("dev"), 0))
    deny.effective_audit(e, to="comm_emit")
    e(Insn.st_mem(BPF_DW, R10, deny.ACTION_OFF, ActionCode.BLOCK))  # never a signal
    deny.block_event_and_verdict(e, _record_path, scope="comm_", path_args=_filename_args, then="verdict")

    # allowlist mode (the live set's allow_exec_inode holds ALLOWLIST_ON_KEY): an unlisted executable is denied
    e.label("allowlist")
    for off in range(0, INODE_KEY.size, 8):
        e(Insn.st_mem(BPF_DW, R10, deny.CG_KEY_OFF + off, 0))
    deny.lookup_rule(e, "allow_exec_inode", deny.CG_KEY_OFF)
    e(Insn.jmp_imm(BPF_JEQ, R0, 0, to="allow"))
    deny.lookup_rule(e, "allow_exec_inode", deny.INODE_OFF)
    e(Insn.jmp_imm(BPF_JNE, R0, 0, to="allow"))
    e.lookup("survival_allowlist", deny.INODE_OFF)
    e(Insn.jmp_imm(BPF_JNE, R0, 0, to="allow"))
    deny.count_and_identify(e, k)
    deny.effective_audit(e, to="list_emit")
    e(Insn.st_mem(BPF_DW, R10, deny.ACTION_OFF, ActionCode.BLOCK))  # never a signal
    deny.block_event_and_verdict(e, _record_path, scope="list_", path_args=_file_path_args(k), then="verdict")
    return e.program("bprm_check", "lsm", "lsm/bprm_check_security")

