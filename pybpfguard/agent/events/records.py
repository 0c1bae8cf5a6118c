"""pybpfguard's ring-buffer records: type numbers, flags, action codes and the layout tables.

docs/records.md: every record starts with ``u32 type`` at offset 0, numbered as AegisBPF numbers them.
The layouts themselves are pybpfguard's own (documented in docs/records.md; a test pins both).
``exec`` and ``block`` share their first 56 bytes (the process identity), so a generator writes the
identity with one routine. Times are ns since boot (the kernel's ``task->start_time``,
CLOCK_MONOTONIC); ``dev`` is the kernel encoding ``major << 20 | minor`` (``sb->s_dev``).
"""

from __future__ import annotations

import enum

from pybpfguard.agent.events.layout import Layout

PATH_MAX = 4096  # include/uapi/linux/limits.h, counting the NUL; a path has at most 4095 bytes
TASK_COMM_LEN = 16  # include/linux/sched.h
ARGS_MAX = 1024  # bytes of the NUL-separated argument area (mm->arg_start..arg_end) an exec_argv carries
ANCESTORS_MAX = 8  # docs/events.md exec.ancestors


class RecordType(enum.IntEnum):
    """The ``u32 type`` at offset 0 (docs/records.md, AegisBPF's numbers)."""

    EXEC = 1
    BLOCK = 2
    EXEC_ARGV = 3
    FORENSIC = 4
    NET_CONNECT = 10
    NET_BIND = 11
    NET_LISTEN = 12
    NET_ACCEPT = 13
    NET_SENDMSG = 14
    NET_RECVMSG = 15
    KERNEL_PTRACE = 20
    KERNEL_MODULE = 21
    KERNEL_BPF = 22
    OVERLAY_COPY_UP = 30


class RecordFlags(enum.IntFlag):
    """The ``u16 flags`` of exec, block and exec_argv records."""

    REC_F_PATH_TRUNCATED = 1 << 0  # the kernel side could not fit the whole path (the decision still ran)


class ActionCode(enum.IntEnum):
    """The ``u8 action`` of a block record: what the hook did (docs/events.md ``action``)."""

    AUDIT = 0  # allowed and reported
    TERM = 1  # -EPERM plus SIGTERM, the signal actually sent
    KILL = 2  # -EPERM plus SIGKILL (after escalation)
    INT = 3  # -EPERM plus SIGINT
    BLOCK = 4  # -EPERM, no signal


# The process identity both exec and block records start with.
_IDENTITY: list[tuple[str, int, str]] = [
    ("type", 0, "u32"),
    ("pid", 4, "u32"),  # tgid, initial PID namespace
    ("ppid", 8, "u32"),  # tgid of the real parent
    ("flags", 12, "u16"),  # RecordFlags
    ("path_len", 14, "u16"),  # bytes of the path tail, without a NUL
    ("start_time", 16, "u64"),  # group leader's start_time, ns since boot
    ("parent_start_time", 24, "u64"),
    ("cgid", 32, "u64"),  # cgroup v2 id = inode of the cgroup directory
    ("comm", 40, f"char[{TASK_COMM_LEN}]"),
]

EXEC = Layout("exec", RecordType.EXEC, [
    *_IDENTITY,
    ("ino", 56, "u64"),  # the executable's inode (bprm->file)
    ("dev", 64, "u32"),  # its sb->s_dev
    ("ancestor_count", 68, "u8"),
    ("pad0", 69, "pad[3]"),
    ("ancestors", 72, f"u32[{ANCESTORS_MAX}]"),  # grandparent first
], tail="path", tail_len="path_len", tail_max=PATH_MAX - 1)

BLOCK = Layout("block", RecordType.BLOCK, [
    *_IDENTITY,
    ("ino", 56, "u64"),
    ("dev", 64, "u32"),
    ("action", 68, "u8"),  # ActionCode
    ("pad0", 69, "pad[3]"),
], tail="path", tail_len="path_len", tail_max=PATH_MAX - 1)

EXEC_ARGV = Layout("exec_argv", RecordType.EXEC_ARGV, [
    ("type", 0, "u32"),
    ("pid", 4, "u32"),
    ("start_time", 8, "u64"),
    ("argc", 16, "u32"),  # full argument count (bprm->argc)
    ("args_len", 20, "u16"),  # bytes captured from the argument area
    ("flags", 22, "u16"),  # RecordFlags (none defined for argv yet)
], tail="args", tail_len="args_len", tail_max=ARGS_MAX)

LAYOUTS: tuple[Layout, ...] = (EXEC, BLOCK, EXEC_ARGV)
