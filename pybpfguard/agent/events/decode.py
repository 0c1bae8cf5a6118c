"""Ring record (``memoryview``) -> event Struct, dispatched on the record's ``u32 type``.

One ``struct.Struct`` per layout, built at import (:mod:`.records`); the dispatch is a tuple indexed
by type, so a record costs one unpack for its header and the Struct construction. ``exec_id`` is
``f"{pid}:{start_time}"``; ``trace_id`` is the same string; parent ids likewise (docs/events.md).
``cgroup_path`` comes from the :class:`~pybpfguard.agent.cgroups.CgroupCache`.

The event loop decodes a whole ring batch with :meth:`RecordDecoder.decode_batch`: ``block`` records
(the ones that come in floods) are decoded inline in its loop, with no call per record, the id
strings come from a per-process cache (a busy process repeats its ids in every event) and the cgroup
path of the previous record is reused when the cgid repeats. ``decode`` is the same code for one
record.

Fanotify decisions (:class:`~pybpfguard.agent.guard_model.BlockDecision`) are the other source of
``block`` events: :meth:`RecordDecoder.decision` builds them with the same id and comm caches, so an
event has one shape and one ``exec_id`` (:func:`format_exec_id`) whichever path decided.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import msgspec
from msgspec import UNSET, UnsetType

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.events.model import Action, BlockEvent, ExecArgvEvent, ExecEvent
from pybpfguard.agent.events.records import (
    ANCESTORS_MAX,
    BLOCK,
    EXEC,
    EXEC_ARGV,
    ActionCode,
    RecordFlags,
    RecordType,
)
from pybpfguard.agent.events.text import argv_b64, cut_at_nul, text_b64

if TYPE_CHECKING:
    from pybpfguard.agent.guard_model import BlockDecision

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
_NO_TEXT: tuple[str | UnsetType, str | UnsetType] = (UNSET, UNSET)


class RecordError(AgentError, ValueError):
    """A record cannot be decoded: ``.record_type`` (int), ``.length`` (bytes), and what is wrong."""

    def __init__(self, record_type: int, length: int, what: str) -> None:
        name = RecordType(record_type).name if record_type in RecordType._value2member_map_ else str(record_type)
        super().__init__(f"ring record type {name} ({length} bytes): {what}")
        self.record_type = record_type
        self.length = length


# The decoders build events positionally (see model's docstring): these are the argument orders,
# checked against the Structs at import so a change to a field table cannot shift values silently.
_PROCESS_ARGS = ("pid", "ppid", "start_time", "exec_id", "trace_id", "parent_start_time", "parent_exec_id",
                 "parent_trace_id", "cgid", "cgroup_path", "cgroup_path_b64", "comm", "comm_b64", "path", "path_b64")
_BLOCK_ARGS = (*_PROCESS_ARGS, "resolved_path", "resolved_path_b64", "action", "ino", "dev", "path_truncated")
_EXEC_ARGS = (*_PROCESS_ARGS, "ino", "dev", "ancestors", "path_truncated")
_ARGV_ARGS = ("pid", "start_time", "exec_id", "trace_id", "argc", "argv", "argv_b64")
for _cls, _args in ((BlockEvent, _BLOCK_ARGS), (ExecEvent, _EXEC_ARGS), (ExecArgvEvent, _ARGV_ARGS)):
    if _cls.__struct_fields__[:len(_args)] != _args:
        raise ImportError(f"decoder argument order {_args} no longer matches {_cls.__name__} fields")
_COMM_CACHE_MAX = 4096
_ID_CACHE_MAX = 4096  # processes whose exec_id string is kept (about 200 bytes each); cleared when full
_BLOCK_TYPE = int(RecordType.BLOCK)
# What a malformed record raises inside the decoders (turned into RecordError by _error).
_RECORD_FAULTS = (IndexError, TypeError, struct.error, RecordError)


def format_exec_id(pid: int, start_time: int) -> str:
    """A process's ``exec_id`` (and ``trace_id``): ``"<pid>:<start_time>"``, *start_time* in ns since boot
    (the kernel's ``task->start_time`` of the group leader; docs/architecture.md "One identity per process")."""
    return f"{pid}:{start_time}"


def _tail_text(rec: memoryview, start: int, n: int, record_type: int) -> tuple[str, str | UnsetType]:
    """The tail string at *start* of *n* bytes as (text, b64), ending at its first NUL."""
    end = start + n
    if len(rec) < end:
        raise RecordError(record_type, len(rec), f"tail of {n} bytes at {start} runs past the record")
    try:
        text = str(rec[start:end], "utf-8")  # fast path: no bytes copy, no NUL search in bytes
    except UnicodeDecodeError:
        return text_b64(cut_at_nul(bytes(rec[start:end])))
    if "\0" in text:
        text = text.partition("\0")[0]
    return text, UNSET


class RecordDecoder:
    """Decodes ring records into event Structs; borrows *cgroups* (the cgid -> path cache).

    ``decode(rec)`` takes a ``memoryview`` (or bytes) of one record's payload, which may be longer
    than the record (ring payloads are padded to 8 bytes). Raises :class:`RecordError` for an unknown
    type, a record shorter than its layout, or an unknown action code.
    """

    def __init__(self, cgroups: CgroupCache) -> None:
        self.cgroups = cgroups
        self._comms: dict[bytes, tuple[str, str | UnsetType]] = {}  # comm[16] -> (text, b64); few distinct
        self._ids: dict[int, tuple[int, str]] = {}  # tgid -> (start_time, exec_id) of its latest process
        table: list[Callable[[memoryview], msgspec.Struct] | None] = [None] * 256
        table[RecordType.EXEC] = self._exec
        table[RecordType.EXEC_ARGV] = self._exec_argv
        self._dispatch = tuple(table)

    def decode(self, rec: memoryview) -> msgspec.Struct:
        """One record -> its event Struct."""
        return self.decode_batch((rec,))[0]

    def decode_batch(self, records: Iterable[memoryview],
                     errors: list[RecordError] | None = None) -> list[msgspec.Struct]:
        """Every record of *records* (e.g. ``RingReader.records(limit)``) -> its event, in ring order.

        A record that cannot be decoded raises :class:`RecordError` when *errors* is None; otherwise
        the error is appended to *errors* and the batch goes on (the ring has already handed the record
        out, so stopping would lose the ones after it). Values are copied out of each memoryview before
        the next one is read, so the events outlive the batch's commit.
        """
        events: list[msgspec.Struct] = []
        append = events.append
        dispatch = self._dispatch
        unpack_block = _BLOCK.unpack_from
        id_of = self._ids.get
        comm_of = self._comms.get
        actions = _ACTIONS
        last_cgid = -1
        cg_text: str = ""
        cg_b64: str | UnsetType = UNSET
        for rec in records:
            try:
                # Dispatch on the low byte (every type number is < 256); each decoder re-checks the whole
                # u32 it unpacks, so a type with high bits set cannot pass for a known one.
                if rec[0] != _BLOCK_TYPE:
                    append(dispatch[rec[0]](rec))  # type: ignore[misc]
                    continue
                typ, pid, ppid, flags, path_len, start, pstart, cgid, comm, ino, dev, code = unpack_block(rec)
                if typ != _BLOCK_TYPE:
                    raise RecordError(typ, len(rec), "no decoder for this record type")
                hit = id_of(pid)
                exec_id = hit[1] if hit is not None and hit[0] == start else self._new_id(pid, start)
                hit = id_of(ppid)
                parent_id = hit[1] if hit is not None and hit[0] == pstart else self._new_id(ppid, pstart)
                comm, comm_b64 = comm_of(comm) or self._comm(comm)
                if path_len:
                    end = _BLOCK_SIZE + path_len
                    if len(rec) < end:
                        raise RecordError(_BLOCK_TYPE, len(rec), f"tail of {path_len} bytes at {_BLOCK_SIZE} "
                                          "runs past the record")
                    try:
                        path = str(rec[_BLOCK_SIZE:end], "utf-8")  # no bytes copy, no NUL search in bytes
                        path_b64: str | UnsetType = UNSET
                        if "\0" in path:
                            path = path.partition("\0")[0]
                    except UnicodeDecodeError:
                        path, path_b64 = text_b64(cut_at_nul(bytes(rec[_BLOCK_SIZE:end])))
                else:
                    path, path_b64 = _NO_TEXT
                if code >= len(actions):
                    raise RecordError(_BLOCK_TYPE, len(rec), f"action code {code} unknown")
                if cgid != last_cgid:
                    cg_text, cg_b64 = self.cgroups.get(cgid)
                    last_cgid = cgid
                append(BlockEvent(pid, ppid, start, exec_id, exec_id, pstart, parent_id, parent_id, cgid, cg_text,
                                  cg_b64, comm, comm_b64, path, path_b64, UNSET, UNSET, actions[code], ino, dev,
                                  True if flags & _TRUNCATED else UNSET))
            except _RECORD_FAULTS as err:
                failure = err if isinstance(err, RecordError) else self._error(rec, err)
                if failure is err and not isinstance(err, RecordError):
                    raise  # a bug in a decoder, not a bad record: keep it as it is
                if errors is None:
                    if failure is err:
                        raise
                    raise failure from err
                errors.append(failure)  # type: ignore[arg-type]
        return events

    def decision(self, d: BlockDecision) -> BlockEvent:
        """A fanotify decision -> its ``block`` event. An opener that could not be identified has pid
        *d.pid* and zeros (and an empty comm) for the rest of its identity."""
        ident = d.identity
        pid = d.pid
        ppid, start, pstart = (ident.ppid, ident.start_time, ident.parent_start_time) if ident else (0, 0, 0)
        hit = self._ids.get(pid)
        this_id = hit[1] if hit is not None and hit[0] == start else self._new_id(pid, start)
        hit = self._ids.get(ppid)
        parent_id = hit[1] if hit is not None and hit[0] == pstart else self._new_id(ppid, pstart)
        comm, comm_b64 = self._comm(ident.comm) if ident else text_b64(b"")
        path, path_b64 = text_b64(d.path) if d.path else _NO_TEXT
        cg_text, cg_b64 = self.cgroups.get(d.cgid)
        return BlockEvent(pid, ppid, start, this_id, this_id, pstart, parent_id, parent_id, d.cgid, cg_text, cg_b64,
                          comm, comm_b64, path, path_b64, UNSET, UNSET, d.action, d.ino, d.dev,
                          UNSET if d.path_complete else True)

    def _new_id(self, pid: int, start_time: int) -> str:
        """``"pid:start_time"``, remembered as the id of *pid* until a process with another start reuses it."""
        if len(self._ids) >= _ID_CACHE_MAX:
            self._ids.clear()
        this_id = format_exec_id(pid, start_time)
        self._ids[pid] = (start_time, this_id)
        return this_id

    def _error(self, rec: memoryview, err: Exception) -> Exception:
        if len(rec) < 4:
            return RecordError(-1, len(rec), "shorter than the u32 type")
        record_type = _TYPE.unpack_from(rec)[0]
        if record_type != _BLOCK_TYPE and (record_type >= len(self._dispatch) or self._dispatch[record_type] is None):
            return RecordError(record_type, len(rec), "no decoder for this record type")
        if isinstance(err, struct.error):
            return RecordError(record_type, len(rec), f"shorter than its layout: {err}")
        return err  # a bug in a decoder, not a bad record: keep it as it is

    def _comm(self, raw: bytes) -> tuple[str, str | UnsetType]:
        hit = self._comms.get(raw)
        if hit is None:
            if len(self._comms) >= _COMM_CACHE_MAX:
                self._comms.clear()
            hit = self._comms[raw] = text_b64(cut_at_nul(raw))
        return hit

    def _exec(self, rec: memoryview) -> msgspec.Struct:
        values = _EXEC.unpack_from(rec)
        typ, pid, ppid, flags, path_len, start, pstart, cgid, comm, ino, dev, count = values[:_ANCESTORS]
        if typ != RecordType.EXEC:
            raise RecordError(typ, len(rec), "no decoder for this record type")
        exec_id = self._new_id(pid, start)  # a new process: its id will recur in its block events
        hit = self._ids.get(ppid)
        parent_id = hit[1] if hit is not None and hit[0] == pstart else self._new_id(ppid, pstart)
        comm, comm_b64 = self._comms.get(comm) or self._comm(comm)
        path, path_b64 = _tail_text(rec, _EXEC_SIZE, path_len, RecordType.EXEC) if path_len else _NO_TEXT
        ancestors = list(values[_ANCESTORS:_ANCESTORS + min(count, ANCESTORS_MAX)])
        return ExecEvent(pid, ppid, start, exec_id, exec_id, pstart, parent_id, parent_id, cgid,
                         *self.cgroups.get(cgid), comm, comm_b64, path, path_b64, ino, dev, ancestors,
                         True if flags & _TRUNCATED else UNSET)

    def _exec_argv(self, rec: memoryview) -> msgspec.Struct:
        typ, pid, start, argc, args_len, _flags = _ARGV.unpack_from(rec)
        if typ != RecordType.EXEC_ARGV:
            raise RecordError(typ, len(rec), "no decoder for this record type")
        end = _ARGV_SIZE + args_len
        if len(rec) < end:
            raise RecordError(RecordType.EXEC_ARGV, len(rec), f"args of {args_len} bytes run past the record")
        # The argument area is "arg0\0arg1\0...": a last piece without its NUL was cut mid-argument
        # and is dropped, so a short argv (len < argc) always means truncation and never a wrong value.
        pieces = bytes(rec[_ARGV_SIZE:end]).split(b"\0")
        argv, b64 = argv_b64(pieces[:-1][:argc])
        this_id = format_exec_id(pid, start)
        return ExecArgvEvent(pid, start, this_id, this_id, argc, argv, b64)
