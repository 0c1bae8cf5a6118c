"""The absolute path of a ``struct path`` written into ring-record memory, without ``bpf_d_path``.

``bpf_d_path`` exists only in LSM and a few fentry hooks; tp_btf programs (``sched_process_exec`` on
hosts without BPF LSM) must walk the dentry tree themselves (docs/kernel.md, "Getting paths inside
BPF programs"). :func:`emit_path` generates that walk the way ``prepend_path()`` in fs/d_path.c does it:

- start at ``path->dentry`` in ``real_mount(path->mnt)``; stop at the process root
  (``current->fs->root``), so chrooted and containerised processes see their own paths;
- at the root dentry of a mount (``vfsmount.mnt_root``) step to ``mount.mnt_mountpoint`` in
  ``mount.mnt_parent``; a mount that is its own parent is the global root: stop there (an unreachable
  path is given from the global root, as ``d_path`` gives it);
- a dentry that is its own parent but not a mount root has escaped its mount (lazy unmount): stop;
- every other step prepends ``"/" + d_name`` and moves to ``d_parent``;
- an unlinked file (``d_hash.pprev == NULL`` and not a root) ends in ``" (deleted)"`` as with ``d_path``;
  a pseudo file (a memfd: unhashed, its own parent, not the root of its mount) is ``"/<name> (deleted)"``,
  what ``d_path`` gets from ``simple_dname()``, the ``d_dname`` of ``alloc_file_pseudo()`` files.
  Other ``d_dname`` forms (``pipe:[ino]``) are not reproduced: such files cannot be executed.

``struct mount`` is the container of ``struct vfsmount`` (fs/mount.h), reached by a negative offset, which
BTF loads cannot follow and ``bpf_rdonly_cast`` (6.2) does not exist on 6.1; so every kernel pointer is
read as a plain number with ``bpf_probe_read_kernel`` (5.5): the verifier sees scalars only, and a stale
pointer (a concurrent rename or unmount) reads zeros or garbage, never faults. Like ``d_path`` without its
``rename_lock`` retry, a path raced by a rename may be mixed from before and after.

The walk is one bounded loop (Linux 5.3) of at most *max_steps* steps (one per component or mount
crossing). Names are prepended backwards into the record's path tail; at the end the path is moved to the
start of the tail with one ``bpf_probe_read_kernel`` whose destination lies below its source (the
kernel's ``copy_from_kernel_nofault`` copies forwards, so the overlap is safe). When the tail is full,
a name is longer than NAME_MAX, or the steps run out, the record keeps the *last* components that fit
and ``REC_F_PATH_TRUNCATED`` is set in its flags.

Record memory needed after the fixed part: :data:`PATH_TAIL_BYTES` (the path needs at most PATH_MAX - 1;
NAME_MAX + 1 more bytes let the verifier prove each name copy in bounds without relating two registers).
"""

from __future__ import annotations

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.events.records import PATH_MAX, RecordFlags
from pybpfguard.agent.programs.emit import Emitter, KernelLayout
from pybpfguard.bpf.asm import (
    BPF_ADD,
    BPF_AND,
    BPF_B,
    BPF_DW,
    BPF_H,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JNE,
    BPF_JSLT,
    BPF_OR,
    BPF_SUB,
    BPF_W,
    R0,
    R1,
    R2,
    R3,
    R4,
    R7,
    R8,
    R9,
    R10,
    BpfFunc,
    Insn,
    Reg,
)

NAME_MAX = 255  # include/uapi/linux/limits.h: longest file name component, in bytes
PATH_LEN_MAX = PATH_MAX - 1  # bytes of a path without its NUL
PATH_TAIL_BYTES = PATH_MAX + NAME_MAX + 1  # record bytes to reserve for the tail (see module doc)
MAX_STEPS = 256  # loop bound: path components plus mount crossings
DELETED = b" (deleted)"  # fs/d_path.c prepend_unreachable/d_path: suffix of an unlinked dentry

#: Every (struct, member) the walk reads; a recorded layout for listings must hold these.
KERNEL_FIELDS: tuple[tuple[str, str], ...] = (
    ("path", "mnt"), ("path", "dentry"), ("task_struct", "fs"), ("fs_struct", "root"),
    ("mount", "mnt"), ("mount", "mnt_parent"), ("mount", "mnt_mountpoint"), ("vfsmount", "mnt_root"),
    ("dentry", "d_hash"), ("hlist_bl_node", "pprev"), ("dentry", "d_parent"), ("dentry", "d_name"),
    ("qstr", "len"), ("qstr", "name"),
)

# Stack slots, as offsets from the caller's *stack* base (all 8-aligned: the verifier refuses
# misaligned stack access).
_DENTRY, _MOUNT, _ROOT_DENTRY, _ROOT_MOUNT, _STEP = 0, 8, 16, 24, 32
_MBUF, _MBUF_MAX = 48, 32  # bytes of struct mount around mnt_parent, mnt_mountpoint, mnt.mnt_root
_DBUF, _DBUF_MAX = 80, 48  # bytes of struct dentry around d_hash.pprev, d_parent, d_name
STACK_BYTES = _DBUF + _DBUF_MAX  # stack the caller lends to emit_path


class PathLayoutError(AgentError, ValueError):
    """The kernel's struct layout does not fit the walk's stack buffers: ``.struct`` and what is wrong."""

    def __init__(self, struct: str, what: str) -> None:
        super().__init__(f"struct {struct}: {what}")
        self.struct = struct


class _Span:
    """One ``bpf_probe_read_kernel`` of the bytes of *struct* that hold *fields* (name -> offset, size)."""

    def __init__(self, struct: str, fields: dict[str, tuple[int, int]], limit: int) -> None:
        self.start = min(off for off, _ in fields.values()) & ~7  # keeps u64 fields 8-aligned on the stack
        self.size = max(off + size for off, size in fields.values()) - self.start
        if self.size > limit:
            raise PathLayoutError(struct, f"fields {sorted(fields)} span {self.size} bytes, buffer holds {limit}")
        self._fields = fields

    def at(self, name: str) -> int:
        """Offset of field *name* inside the buffer."""
        return self._fields[name][0] - self.start


def _probe(e: Emitter, dst: int, size: int, src: int, src_off: int) -> None:
    """``bpf_probe_read_kernel(fp + dst, size, src + src_off)``; *src* is a register (any, even R1/R2)."""
    e(Insn.mov64_reg(R3, src))
    if src_off:
        e(Insn.alu64_imm(BPF_ADD, R3, src_off))
    e(Insn.mov64_reg(R1, R10), Insn.alu64_imm(BPF_ADD, R1, dst), Insn.mov64_imm(R2, size),
      Insn.call(BpfFunc.probe_read_kernel))


def emit_path(e: Emitter, k: KernelLayout, *, rec: int, path: int, tail_off: int, len_off: int, flags_off: int,
              stack: int, max_steps: int = MAX_STEPS) -> None:
    """Emit code writing the absolute path of the ``struct path`` at address *path* into a ring record.

    *rec*: a callee-saved register (R6..R9) holding the reserved record, which must have at least
    ``tail_off + PATH_TAIL_BYTES`` bytes; it is preserved. *path*: a register holding the address of a
    ``struct path`` (a BTF pointer such as ``&file->f_path``, or a number); clobbered. The path's bytes
    (no NUL) go to ``rec + tail_off``, their count (1..4095) as u16 to ``rec + len_off``;
    ``REC_F_PATH_TRUNCATED`` is OR-ed into the u16 at ``rec + flags_off`` when the path did not fit.
    *stack*: the fp-relative offset (negative, 8-aligned) of :data:`STACK_BYTES` bytes the walk may use.
    R0..R5 are clobbered. Helpers: ``get_current_task``, ``probe_read_kernel`` (tracing and LSM, 5.5).
    Raises :class:`PathLayoutError` if the kernel's dentry or mount fields are too spread out.
    """
    _check_rec("emit_path", rec)
    if stack % 8 or stack + STACK_BYTES > 0:
        raise ValueError(f"emit_path: stack area at fp{stack:+d} must be 8-aligned and {STACK_BYTES} bytes below fp")
    _walk(e, k, path=path, hdr=rec, tail=rec, tail_off=tail_off, len_off=len_off, flags_off=flags_off, stack=stack,
          steps=max_steps)


def _check_rec(caller: str, rec: int) -> None:
    if rec not in (6, 7, 8, 9):
        raise ValueError(f"{caller}: rec must be a callee-saved register R6..R9, got R{rec}")


#: the label of the walk as a subprogram (:func:`call_path`)
SUBPROGRAM = "dpath_walk"


def call_path(e: Emitter, k: KernelLayout, *, rec: int, path: int, tail_off: int, len_off: int, flags_off: int,
              max_steps: int = MAX_STEPS) -> None:
    """:func:`emit_path` as a call of one shared bpf-to-bpf subprogram (a program that walks more than
    one path lists the walk once; the verifier still checks it at each call site, with that site's
    *max_steps*). Same arguments and effect, except that the subprogram has its own stack frame (no
    *stack* area is lent) and R0..R5 are clobbered by the call. Every call in one program must use the same
    *len_off* and *flags_off* (ValueError otherwise); the program needs ``func_info`` for its subprograms
    (``AgentProgram.functions``, loaded by :func:`pybpfguard.agent.programs.load.load_program`).

    Subprogram arguments: R1 = the ``struct path`` address, R2 = the record, R3 = the path tail in the
    record, R4 = the step bound; it returns 0."""
    _check_rec("call_path", rec)

    def body(sub: Emitter) -> None:
        sub(Insn.mov64_reg(R7, R2).noted("the record"), Insn.mov64_reg(R8, R3).noted("its path tail"),
            Insn.mov64_reg(R9, R4).noted("the step bound"))
        _walk(sub, k, path=R1, hdr=R7, tail=R8, tail_off=0, len_off=len_off, flags_off=flags_off,
              stack=-STACK_BYTES, steps=R9)
        sub(Insn.mov64_imm(R0, 0), Insn.exit())

    e.subprogram(SUBPROGRAM, body, key=(len_off, flags_off))
    if path != R1:
        e(Insn.mov64_reg(R1, path))
    e(Insn.mov64_reg(R2, rec), Insn.mov64_reg(R3, rec), Insn.alu64_imm(BPF_ADD, R3, tail_off),
      Insn.mov64_imm(R4, max_steps), Insn.call_local(SUBPROGRAM))


def _walk(e: Emitter, k: KernelLayout, *, path: int, hdr: int, tail: int, tail_off: int, len_off: int,
          flags_off: int, stack: int, steps: int | Reg) -> None:
    """The walk of :func:`emit_path`: the record's u16 fields at *hdr* + *len_off*/*flags_off*, its path
    tail at *tail* + *tail_off* (the same register inline); *steps*: the step bound, a number or (a
    ``Reg``) the callee-saved register holding it."""
    off = k.offsetof
    mnt_in_mount = off("mount", "mnt")
    name_off = off("dentry", "d_name")
    m = _Span("mount", {
        "parent": (off("mount", "mnt_parent"), 8), "mountpoint": (off("mount", "mnt_mountpoint"), 8),
        "root": (mnt_in_mount + off("vfsmount", "mnt_root"), 8)}, _MBUF_MAX)
    d = _Span("dentry", {
        "pprev": (off("dentry", "d_hash") + off("hlist_bl_node", "pprev"), 8),
        "parent": (off("dentry", "d_parent"), 8),
        "len": (name_off + off("qstr", "len"), 4), "name": (name_off + off("qstr", "name"), 8)}, _DBUF_MAX)
    s = stack.__add__  # slot name -> fp offset
    # The write position lives in the record's slack, not on the stack: the verifier does not track
    # values in ring memory, so every loop iteration sees pos as [0, 4095] (after the mask) and its
    # states prune; on the stack each iteration would carry a narrower range of its own.
    pos = tail_off + PATH_MAX
    loop, name, prepend, deleted, trunc, done, move, end = (
        e.fresh(f"dpath_{n}") for n in ("loop", "name", "prepend", "deleted", "trunc", "done", "move", "end"))
    step_bound = (Insn.jmp_reg(BPF_JGE, R1, steps, to=trunc) if isinstance(steps, Reg)
                  else Insn.jmp_imm(BPF_JGE, R1, steps, to=trunc))

    # start: the path's dentry and mount
    _probe(e, s(_DBUF), 16, path, 0)
    e(Insn.ldx_mem(BPF_DW, R1, R10, s(_DBUF) + off("path", "mnt")), Insn.alu64_imm(BPF_SUB, R1, mnt_in_mount),
      Insn.stx_mem(BPF_DW, R10, R1, s(_MOUNT)),
      Insn.ldx_mem(BPF_DW, R1, R10, s(_DBUF) + off("path", "dentry")), Insn.stx_mem(BPF_DW, R10, R1, s(_DENTRY)))
    # the process root: current->fs->root (NULL fs, as in a dying task, reads zeros: never matches)
    e(Insn.call(BpfFunc.get_current_task))
    _probe(e, s(_DBUF), 8, R0, off("task_struct", "fs"))
    e(Insn.ldx_mem(BPF_DW, R4, R10, s(_DBUF)))
    _probe(e, s(_DBUF), 16, R4, off("fs_struct", "root"))
    e(Insn.ldx_mem(BPF_DW, R1, R10, s(_DBUF) + off("path", "mnt")), Insn.alu64_imm(BPF_SUB, R1, mnt_in_mount),
      Insn.stx_mem(BPF_DW, R10, R1, s(_ROOT_MOUNT)),
      Insn.ldx_mem(BPF_DW, R1, R10, s(_DBUF) + off("path", "dentry")), Insn.stx_mem(BPF_DW, R10, R1, s(_ROOT_DENTRY)),
      Insn.st_mem(BPF_DW, tail, pos, PATH_LEN_MAX), Insn.st_mem(BPF_DW, R10, s(_STEP), 0),
      Insn.ldx_mem(BPF_DW, R4, R10, s(_MOUNT)))
    _probe(e, s(_MBUF), m.size, R4, m.start)
    # an unlinked leaf ends in " (deleted)"; a pseudo file (memfd: never hashed, its own parent, not
    # the root of its mount) is named as simple_dname() names it: "/" name " (deleted)"
    e(Insn.ldx_mem(BPF_DW, R4, R10, s(_DENTRY)))
    _probe(e, s(_DBUF), d.size, R4, d.start)
    e(Insn.ldx_mem(BPF_DW, R1, R10, s(_DBUF) + d.at("pprev")), Insn.jmp_imm(BPF_JNE, R1, 0, to=loop),
      Insn.ldx_mem(BPF_DW, R1, R10, s(_DBUF) + d.at("parent")), Insn.ldx_mem(BPF_DW, R2, R10, s(_DENTRY)),
      Insn.jmp_reg(BPF_JNE, R1, R2, to=deleted),
      Insn.ldx_mem(BPF_DW, R3, R10, s(_MBUF) + m.at("root")), Insn.jmp_reg(BPF_JEQ, R2, R3, to=loop))
    e.label(deleted)
    deleted_at = PATH_LEN_MAX - len(DELETED)
    for i in range(0, len(DELETED), 2):
        e(Insn.st_mem(BPF_H, tail, tail_off + deleted_at + i, int.from_bytes(DELETED[i:i + 2], "little")))
    e(Insn.st_mem(BPF_DW, tail, pos, deleted_at),
      Insn.ldx_mem(BPF_DW, R1, R10, s(_DBUF) + d.at("parent")), Insn.ldx_mem(BPF_DW, R2, R10, s(_DENTRY)),
      Insn.jmp_reg(BPF_JEQ, R1, R2, to=prepend))  # the pseudo file's name, then the loop finds nothing above

    e.label(loop)
    e(Insn.ldx_mem(BPF_DW, R1, R10, s(_STEP)), step_bound,
      Insn.alu64_imm(BPF_ADD, R1, 1), Insn.stx_mem(BPF_DW, R10, R1, s(_STEP)),
      Insn.ldx_mem(BPF_DW, R1, R10, s(_DENTRY)), Insn.ldx_mem(BPF_DW, R2, R10, s(_MOUNT)),
      Insn.ldx_mem(BPF_DW, R3, R10, s(_ROOT_DENTRY)), Insn.jmp_reg(BPF_JNE, R1, R3, to=f"{loop}_notroot"),
      Insn.ldx_mem(BPF_DW, R3, R10, s(_ROOT_MOUNT)), Insn.jmp_reg(BPF_JEQ, R2, R3, to=done))
    e.label(f"{loop}_notroot")
    e(Insn.ldx_mem(BPF_DW, R3, R10, s(_MBUF) + m.at("root")), Insn.jmp_reg(BPF_JNE, R1, R3, to=name),
      # the root of this mount: continue at its mountpoint in the parent mount, unless this is the top
      Insn.ldx_mem(BPF_DW, R3, R10, s(_MBUF) + m.at("parent")), Insn.jmp_reg(BPF_JEQ, R3, R2, to=done),
      Insn.stx_mem(BPF_DW, R10, R3, s(_MOUNT)),
      Insn.ldx_mem(BPF_DW, R4, R10, s(_MBUF) + m.at("mountpoint")), Insn.stx_mem(BPF_DW, R10, R4, s(_DENTRY)))
    _probe(e, s(_MBUF), m.size, R3, m.start)
    e(Insn.ja(loop))

    e.label(name)
    _probe(e, s(_DBUF), d.size, R1, d.start)
    e(Insn.ldx_mem(BPF_DW, R1, R10, s(_DENTRY)), Insn.ldx_mem(BPF_DW, R2, R10, s(_DBUF) + d.at("parent")),
      Insn.jmp_reg(BPF_JEQ, R1, R2, to=done))  # escaped its mount (lazily unmounted): nothing above to name
    e.label(prepend)
    e(Insn.ldx_mem(BPF_W, R3, R10, s(_DBUF) + d.at("len")), Insn.jmp_imm(BPF_JGT, R3, NAME_MAX, to=trunc),
      Insn.ldx_mem(BPF_DW, R4, tail, pos), Insn.alu64_imm(BPF_AND, R4, PATH_MAX - 1),
      Insn.alu64_reg(BPF_SUB, R4, R3), Insn.alu64_imm(BPF_SUB, R4, 1),
      Insn.jmp_imm(BPF_JSLT, R4, 0, to=trunc),
      Insn.stx_mem(BPF_DW, tail, R4, pos),
      Insn.mov64_reg(R1, tail), Insn.alu64_reg(BPF_ADD, R1, R4), Insn.st_mem(BPF_B, R1, tail_off, ord("/")),
      Insn.alu64_imm(BPF_ADD, R1, tail_off + 1), Insn.mov64_reg(R2, R3),
      Insn.ldx_mem(BPF_DW, R3, R10, s(_DBUF) + d.at("name")), Insn.call(BpfFunc.probe_read_kernel),
      Insn.ldx_mem(BPF_DW, R1, R10, s(_DBUF) + d.at("parent")), Insn.stx_mem(BPF_DW, R10, R1, s(_DENTRY)),
      Insn.ja(loop))

    e.label(trunc)
    e(Insn.ldx_mem(BPF_H, R1, hdr, flags_off), Insn.alu64_imm(BPF_OR, R1, RecordFlags.REC_F_PATH_TRUNCATED),
      Insn.stx_mem(BPF_H, hdr, R1, flags_off))
    e.label(done)
    e(Insn.ldx_mem(BPF_DW, R4, tail, pos), Insn.alu64_imm(BPF_AND, R4, PATH_MAX - 1),
      Insn.mov64_imm(R2, PATH_LEN_MAX), Insn.alu64_reg(BPF_SUB, R2, R4),
      Insn.jmp_imm(BPF_JNE, R2, 0, to=move),
      # nothing named: the file is the root itself
      Insn.st_mem(BPF_B, tail, tail_off, ord("/")), Insn.st_mem(BPF_H, hdr, len_off, 1), Insn.ja(end))
    e.label(move)
    e(Insn.stx_mem(BPF_H, hdr, R2, len_off), Insn.mov64_reg(R1, tail))
    if tail_off:
        e(Insn.alu64_imm(BPF_ADD, R1, tail_off))
    e(Insn.mov64_reg(R3, R1), Insn.alu64_reg(BPF_ADD, R3, R4), Insn.call(BpfFunc.probe_read_kernel))
    e.label(end)
