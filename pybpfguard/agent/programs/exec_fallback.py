"""The exec signal fallback (docs/enforcement.md ``--enforce-fallback=signal``).

Where neither BPF LSM nor fanotify can refuse an exec, ``sched_process_exec`` (tp_btf) is the last point
before the new image runs: the exec already succeeded, so the hook cannot return -EPERM, but
``bpf_send_signal(SIGKILL)`` from it kills the task before it runs any instruction of its own
(docs/kernel.md, measured on 6.18; checked on 6.1 in the VM tier). The posture says so: ``exec=signal``,
state ``ENFORCE_SIGNAL``, never ``ENFORCE``.

Emitted at the end of the ``exec`` program, only acting when ``agent_config.signal_fallback_enforce`` is set
(the daemon sets it when it chose this fallback). The decision is the file order of docs/enforcement.md on the exec'd
inode: policy-empty hint, ``deny_inode`` with DENY_ALWAYS, survival allowlist, ``allow_cgroup``, then
effective audit (count and report ``AUDIT``) or enforce (count, SIGKILL, report ``KILL``). The signal is
the fallback's own and fixed: no ``--enforce-signal`` choice, no escalation (the task is gone after one).
The ``block`` record carries the executable's real path (:func:`dpath.emit_path`, as the exec record) and
its ino/dev. Steps come from :mod:`.deny`; its register contract holds (R9 = config, R6 untouched).
"""

from __future__ import annotations

from pybpfguard.agent.events.records import BLOCK, ActionCode
from pybpfguard.agent.maps import BLOCK_STATS, INODE_KEY
from pybpfguard.agent.programs import deny, dpath
from pybpfguard.agent.programs.emit import Emitter, KernelLayout
from pybpfguard.agent.programs.process import CNT_KEY_OFF, PROC_INFO, VAL_OFF
from pybpfguard.bpf.asm import BPF_DW, BPF_JEQ, BPF_JNE, BPF_W, R1, R2, R7, R10, BpfFunc, Insn

#: Maps the fallback reads, besides the exec program's own (``events``, ``block_stats``).
MAPS = ("agent_config", *deny.rule_maps(*deny.FILE_RULE_MAPS), "survival_allowlist")

#: Steps of the block record's path walk. The verifier walks every step of the bounded loop (about 170
#: verified insns each): at 64 the exec program verifies about 50k insns instead of 40k (256 would be 82k,
#: +80 ms of start-up). Deeper paths keep their last components and set ``path_truncated``; the exec
#: record of the same exec (same ``exec_id``, walked to dpath.MAX_STEPS) has the whole path.
BLOCK_PATH_STEPS = 64

_FPATH_OFF = deny.STACK_END - 8  # &bprm->file->f_path, spilled: deny's routines own R9


def signal_fallback(e: Emitter, k: KernelLayout, bprm: int) -> None:
    """Emit the fallback decision; ends the program (every path returns 0).

    *bprm*: register holding the ``struct linux_binprm *`` (clobbered: R9 becomes the config). Needs the
    new image's PROC_INFO at ``process.VAL_OFF`` with ``exec_ino``/``exec_dev`` set. The emitter's maps
    must include :data:`MAPS`, ``events`` and ``block_stats``. Helpers: ``send_signal`` (5.3),
    ``get_current_cgroup_id``, ``ringbuf_reserve``/``submit``, ``probe_read_kernel``."""
    e.load(R1, bprm, k, "linux_binprm", "file")
    e.member_addr(R1, k, "file", "f_path")
    e(Insn.stx_mem(BPF_DW, R10, R1, _FPATH_OFF))
    deny.load_config(e)
    for name, skip_if in (("signal_fallback_enforce", BPF_JEQ), ("file_policy_empty", BPF_JNE)):
        deny.config(e, R2, name)
        e(Insn.jmp_imm(skip_if, R2, 0, to="allow"))
    # the inode key of the exec'd file: the one the exec record named
    for name, size in (("ino", BPF_DW), ("dev", BPF_W)):
        e(Insn.ldx_mem(size, R2, R10, VAL_OFF + PROC_INFO.offset(f"exec_{name}")),
          Insn.stx_mem(size, R10, R2, deny.INODE_OFF + INODE_KEY.offset(name)))
    e(Insn.st_mem(BPF_W, R10, deny.INODE_OFF + INODE_KEY.offset("pad"), 0))
    deny.deny_inode_match(e, miss="allow")
    e.count("block_stats", BLOCK_STATS.offset("blocks"), CNT_KEY_OFF)
    deny.effective_audit(e, to="emit")
    e(Insn.st_mem(BPF_DW, R10, deny.ACTION_OFF, ActionCode.KILL),
      Insn.mov64_imm(R1, deny.SIGKILL), Insn.call(BpfFunc.send_signal))
    deny.block_event_and_verdict(e, _exec_path(k), tail_bytes=dpath.PATH_TAIL_BYTES, eperm=False)


def _exec_path(k: KernelLayout) -> deny.PathWriter:
    """Path writer: the executable's absolute path, walked from the spilled ``&bprm->file->f_path``."""
    def write(e: Emitter) -> None:
        e(Insn.ldx_mem(BPF_DW, R1, R10, _FPATH_OFF))
        dpath.call_path(e, k, rec=R7, path=R1, tail_off=BLOCK.size, len_off=BLOCK.offset("path_len"),
                        flags_off=BLOCK.offset("flags"), max_steps=BLOCK_PATH_STEPS)
    return write
