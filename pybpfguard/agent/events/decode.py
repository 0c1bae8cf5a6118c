"""Ring record (``memoryview``) -> event Struct, dispatched on the record's ``u32 type``.

One ``struct.Struct`` per layout, built at import (:mod:`.records`); the dispatch is a tuple indexed
by type, so a record costs one small unpack for its type, one unpack for its header, and the Struct
construction. ``exec_id`` is ``f"{pid}:{start_time}"``; ``trace_id`` is the same string; parent ids
likewise (REFERENCE §4.2). ``cgroup_path`` comes from the :class:`~pybpfguard.agent.cgroups.CgroupCache`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import msgspec
from msgspec import UNSET

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.model import Action, BlockEvent, ExecArgvEvent, ExecEvent
from pybpfguard.agent.events.records import BLOCK, EXEC, EXEC_ARGV, ActionCode, RecordFlags, RecordType
from pybpfguard.agent.events.text import argv_b64, text_b64

_TYPE = struct.Struct("<I")
_BLOCK = BLOCK.struct
_EXEC = EXEC.struct
_ARGV = EXEC_ARGV.struct
_BLOCK_SIZE, _EXEC_SIZE, _ARGV_SIZE = BLOCK.size, EXEC.size, EXEC_ARGV.size
_TRUNCATED = int(RecordFlags.REC_F_PATH_TRUNCATED)
# record action code -> JSON action, indexed by ActionCode
_ACTIONS: tuple[Action, ...] = tuple(Action[code.name] for code in sorted(ActionCode))

_IDENTITY = ("type", "pid", "ppid", "flags", "path_len", "start_time", "parent_start_time", "cgid", "comm")
BLOCK.require_unpack_order(*_IDENTITY, "ino", "dev", "action")
EXEC.require_unpack_order(*_IDENTITY, "ino", "dev", "ancestor_count", *["ancestors"] * 8)
EXEC_ARGV.require_unpack_order("type", "pid", "start_time", "argc", "args_len", "flags")
_ANCESTORS = EXEC.value_index("ancestors")


class RecordError(ValueError):
    """A record cannot be decoded: ``.record_type`` (int), ``.length`` (bytes), and what is wrong."""

    def __init__(self, record_type: int, length: int, what: str) -> None:
        name = RecordType(record_type).name if record_type in RecordType._value2member_map_ else str(record_type)
        super().__init__(f"ring record type {name} ({length} bytes): {what}")
        self.record_type = record_type
        self.length = length


def _tail(rec: memoryview, start: int, n: int, record_type: int) -> bytes:
    end = start + n
    if len(rec) < end:
        raise RecordError(record_type, len(rec), f"tail of {n} bytes at {start} runs past the record")
    raw = bytes(rec[start:end])
    nul = raw.find(0)  # a kernel string ends at its first NUL
    return raw if nul < 0 else raw[:nul]


class RecordDecoder:
    """Decodes ring records into event Structs; borrows *cgroups* (the cgid -> path cache).

    ``decode(rec)`` takes a ``memoryview`` (or bytes) of one record's payload, which may be longer
    than the record (ring payloads are padded to 8 bytes). Raises :class:`RecordError` for an unknown
    type, a record shorter than its layout, or an unknown action code.
    """

    def __init__(self, cgroups: CgroupCache) -> None:
        self.cgroups = cgroups
        table: list[Callable[[memoryview], msgspec.Struct] | None] = [None] * (max(RecordType) + 1)
        table[RecordType.EXEC] = self._exec
        table[RecordType.BLOCK] = self._block
        table[RecordType.EXEC_ARGV] = self._exec_argv
        self._dispatch = tuple(table)

    def decode(self, rec: memoryview) -> msgspec.Struct:
        """One record -> its event Struct."""
        if len(rec) < 4:
            raise RecordError(-1, len(rec), "shorter than the u32 type")
        record_type = _TYPE.unpack_from(rec)[0]
        try:
            fn = self._dispatch[record_type]
        except IndexError:
            fn = None
        if fn is None:
            raise RecordError(record_type, len(rec), "no decoder for this record type")
        try:
            return fn(rec)
        except struct.error as err:
            raise RecordError(record_type, len(rec), f"shorter than its layout: {err}") from err

    def _block(self, rec: memoryview) -> msgspec.Struct:
        _, pid, ppid, flags, path_len, start, pstart, cgid, comm, ino, dev, code = _BLOCK.unpack_from(rec)
        exec_id = f"{pid}:{start}"
        parent_id = f"{ppid}:{pstart}"
        cg, cg_b64 = self.cgroups.get(cgid)
        comm, comm_b64 = text_b64(comm.partition(b"\0")[0])
        path = path_b64 = UNSET
        if path_len:
            path, path_b64 = text_b64(_tail(rec, _BLOCK_SIZE, path_len, RecordType.BLOCK))
        try:
            action = _ACTIONS[code]
        except IndexError:
            raise RecordError(RecordType.BLOCK, len(rec), f"action code {code} unknown") from None
        return BlockEvent(
            pid=pid, ppid=ppid, start_time=start, exec_id=exec_id, trace_id=exec_id, parent_start_time=pstart,
            parent_exec_id=parent_id, parent_trace_id=parent_id, cgid=cgid, cgroup_path=cg,
            cgroup_path_b64=cg_b64, comm=comm, comm_b64=comm_b64, path=path, path_b64=path_b64,
            action=action, ino=ino, dev=dev, path_truncated=True if flags & _TRUNCATED else UNSET)

    def _exec(self, rec: memoryview) -> msgspec.Struct:
        values = _EXEC.unpack_from(rec)
        _, pid, ppid, flags, path_len, start, pstart, cgid, comm, ino, dev, count = values[:_ANCESTORS]
        exec_id = f"{pid}:{start}"
        parent_id = f"{ppid}:{pstart}"
        cg, cg_b64 = self.cgroups.get(cgid)
        comm, comm_b64 = text_b64(comm.partition(b"\0")[0])
        path = path_b64 = UNSET
        if path_len:
            path, path_b64 = text_b64(_tail(rec, _EXEC_SIZE, path_len, RecordType.EXEC))
        ancestors = list(values[_ANCESTORS:_ANCESTORS + min(count, 8)])
        return ExecEvent(
            pid=pid, ppid=ppid, start_time=start, exec_id=exec_id, trace_id=exec_id, parent_start_time=pstart,
            parent_exec_id=parent_id, parent_trace_id=parent_id, cgid=cgid, cgroup_path=cg,
            cgroup_path_b64=cg_b64, comm=comm, comm_b64=comm_b64, path=path, path_b64=path_b64, ino=ino,
            dev=dev, ancestors=ancestors, path_truncated=True if flags & _TRUNCATED else UNSET)

    def _exec_argv(self, rec: memoryview) -> msgspec.Struct:
        _, pid, start, argc, args_len, _flags = _ARGV.unpack_from(rec)
        end = _ARGV_SIZE + args_len
        if len(rec) < end:
            raise RecordError(RecordType.EXEC_ARGV, len(rec), f"args of {args_len} bytes run past the record")
        # The argument area is "arg0\0arg1\0...": a last piece without its NUL was cut mid-argument
        # and is dropped, so a short argv (len < argc) always means truncation and never a wrong value.
        pieces = bytes(rec[_ARGV_SIZE:end]).split(b"\0")
        args = pieces[:-1][:argc]
        argv, b64 = argv_b64(args)
        exec_id = f"{pid}:{start}"
        return ExecArgvEvent(pid=pid, start_time=start, exec_id=exec_id, trace_id=exec_id, argc=argc,
                             argv=argv, argv_b64=b64)
