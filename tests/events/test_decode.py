"""Ring records decode to events with the reference's field order, ids and the non-UTF-8 rule."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder, RecordError, format_exec_id
from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.model import Action, BlockEvent
from pybpfguard.agent.events.records import BLOCK, EXEC, EXEC_ARGV, ActionCode, RecordFlags
from pybpfguard.agent.guard_model import BlockDecision, ProcessIdentity

BLOCK_ORDER = ["type", "pid", "ppid", "start_time", "exec_id", "trace_id", "parent_start_time", "parent_exec_id",
               "parent_trace_id", "cgid", "cgroup_path", "comm", "path", "resolved_path", "action", "ino", "dev"]


@pytest.fixture(scope="module")
def decoder() -> RecordDecoder:
    return RecordDecoder(CgroupCache())


def _line(decoder: RecordDecoder, rec: bytes) -> bytes:
    out = bytearray()
    LineEncoder().append(decoder.decode(memoryview(rec)), out)
    return bytes(out)


def _block(**kw: object) -> bytes:
    base: dict[str, object] = dict(pid=4242, ppid=4000, start_time=123456789, parent_start_time=1000, cgid=1,
                                   comm=b"cat", ino=99, dev=271581186, action=ActionCode.KILL, path=b"/tmp/f")
    base.update(kw)
    return BLOCK.pack(**base)


def test_block_record_gives_block_line_in_reference_field_order(decoder, event_validator) -> None:
    line = _line(decoder, _block())
    obj = event_validator(line)[0]
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert [k for k in obj if k in BLOCK_ORDER] == [k for k in BLOCK_ORDER if k in obj]
    assert obj["action"] == "KILL" and obj["ino"] == 99 and obj["dev"] == 271581186 and obj["path"] == "/tmp/f"
    assert b'{"type":"block","pid":4242,"ppid":4000,' in line  # compact, no spaces


def test_exec_id_trace_id_and_parent_ids_are_pid_colon_start_time(decoder) -> None:
    ev = decoder.decode(memoryview(_block()))
    assert ev.exec_id == ev.trace_id == "4242:123456789"
    assert ev.parent_exec_id == ev.parent_trace_id == "4000:1000"


@pytest.mark.parametrize(("code", "text"), [(c, c.name) for c in ActionCode])
def test_every_action_code_maps_to_its_reference_name(decoder, code, text) -> None:
    assert decoder.decode(memoryview(_block(action=code))).action == text


def test_non_utf8_comm_and_path_carry_replacement_text_and_b64_sibling_right_after(decoder, event_validator) -> None:
    raw_path = b"/tmp/caf\xe9\xff.txt"
    obj = event_validator(_line(decoder, _block(comm=b"b\xffd", path=raw_path)))[0]
    keys = list(obj)
    assert keys[keys.index("comm") + 1] == "comm_b64" and keys[keys.index("path") + 1] == "path_b64"
    assert obj["path"] == "/tmp/caf\ufffd\ufffd.txt" and base64.b64decode(obj["path_b64"]) == raw_path
    assert obj["comm"] == "b\ufffdd" and base64.b64decode(obj["comm_b64"]) == b"b\xffd"


def test_valid_utf8_passes_unchanged_without_b64(decoder) -> None:
    line = _line(decoder, _block(path="/tmp/żółw-日本".encode()))
    assert "/tmp/żółw-日本".encode() in line and b"_b64" not in line


def test_kernel_strings_end_at_the_first_nul(decoder) -> None:
    ev = decoder.decode(memoryview(_block(comm=b"sh\0garbage", path=b"/tmp/a\0stale-bytes")))
    assert (ev.comm, ev.path) == ("sh", "/tmp/a")


def test_4095_byte_path_comes_through_whole_and_a_cut_path_says_so(decoder, event_validator) -> None:
    long_path = b"/" + b"d/" * 2046 + b"f1"
    assert len(long_path) == 4095
    obj = event_validator(_line(decoder, _block(path=long_path)))[0]
    assert obj["path"].encode() == long_path and "path_truncated" not in obj
    cut = event_validator(_line(decoder, _block(path=long_path, flags=RecordFlags.REC_F_PATH_TRUNCATED)))[0]
    assert cut["path_truncated"] is True


def test_block_without_path_omits_path_never_null(decoder, event_validator) -> None:
    obj = event_validator(_line(decoder, _block(path=b"", ino=0, dev=0)))[0]
    assert "path" not in obj and None not in obj.values()


def test_padded_ring_payload_decodes_ignoring_bytes_after_the_tail(decoder) -> None:
    rec = _block(path=b"/abc") + b"\xaa" * 4
    assert decoder.decode(memoryview(rec)).path == "/abc"


def test_exec_record_gives_exec_line_with_ancestors_and_real_binary(decoder, event_validator) -> None:
    rec = EXEC.pack(pid=10, ppid=9, start_time=5, parent_start_time=4, cgid=1, comm=b"a-very-long-bin",
                    ino=3, dev=2, ancestor_count=3, ancestors=[8, 7, 6, 99], path=b"/opt/x/a-very-long-binary-name")
    obj = event_validator(_line(decoder, rec))[0]
    assert obj["ancestors"] == [8, 7, 6]
    assert obj["comm"] == "a-very-long-bin" and obj["path"] == "/opt/x/a-very-long-binary-name"
    assert list(obj)[:4] == ["type", "pid", "ppid", "start_time"]


def test_exec_argv_drops_the_argument_cut_midway_so_short_argv_means_truncation(decoder, event_validator) -> None:
    whole = event_validator(_line(decoder, EXEC_ARGV.pack(pid=1, start_time=2, argc=2, args=b"ls\0-l\0")))[0]
    assert whole["argv"] == ["ls", "-l"] and whole["argc"] == 2 and whole["exec_id"] == "1:2"
    cut = event_validator(_line(decoder, EXEC_ARGV.pack(pid=1, start_time=2, argc=3, args=b"ls\0-l\0/very/lo")))[0]
    assert cut["argv"] == ["ls", "-l"] and cut["argc"] == 3


def test_exec_argv_non_utf8_element_gives_b64_of_every_element(decoder, event_validator) -> None:
    obj = event_validator(_line(decoder, EXEC_ARGV.pack(pid=1, argc=2, args=b"cat\0\xff\xfe\0")))[0]
    assert obj["argv"] == ["cat", "\ufffd\ufffd"]
    assert [base64.b64decode(x) for x in obj["argv_b64"]] == [b"cat", b"\xff\xfe"]
    assert list(obj)[list(obj).index("argv") + 1] == "argv_b64"


def test_unknown_record_type_raises_record_error_naming_it(decoder) -> None:
    with pytest.raises(RecordError, match=r"type 77 .*no decoder") as info:
        decoder.decode(memoryview(b"\x4d\0\0\0" + bytes(60)))
    assert info.value.record_type == 77


def test_record_shorter_than_its_layout_or_tail_raises_record_error(decoder) -> None:
    with pytest.raises(RecordError, match=r"BLOCK .*shorter than its layout"):
        decoder.decode(memoryview(_block()[:40]))
    with pytest.raises(RecordError, match="runs past the record"):
        decoder.decode(memoryview(_block(path=b"/abcdef")[:-3]))


def test_unknown_action_code_raises_record_error(decoder) -> None:
    with pytest.raises(RecordError, match="action code 9"):
        decoder.decode(memoryview(_block(action=9)))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=300).filter(lambda b: 0 not in b), st.binary(max_size=15))
def test_any_file_name_bytes_give_one_json_line_that_round_trips(path: bytes, comm: bytes) -> None:
    dec = RecordDecoder(CgroupCache())
    line = _line(dec, _block(path=path, comm=comm))
    assert line.count(b"\n") == 1 and line.endswith(b"\n")  # case 9: newline/quote/backslash/tab never split
    obj = json.loads(line)
    want_comm = comm.partition(b"\0")[0]
    for name, raw in (("path", path), ("comm", want_comm)):
        got = base64.b64decode(obj[f"{name}_b64"]) if f"{name}_b64" in obj else obj[name].encode()
        assert got == raw


def test_cgroup_path_of_a_new_cgroup_resolves_through_a_rescan(kernel, test_cgroup: Path) -> None:
    cache = CgroupCache(min_rescan_s=0)
    dec = RecordDecoder(cache)
    cache.rescan()
    sub = test_cgroup / "child"
    sub.mkdir()
    try:
        ev = dec.decode(memoryview(_block(cgid=os.stat(sub).st_ino)))
        assert isinstance(ev, BlockEvent)
        assert ev.cgroup_path == str(sub) and ev.cgroup_path.startswith(os.fsdecode(cache.mount))
    finally:
        sub.rmdir()
    cache.rescan()
    assert dec.decode(memoryview(_block(cgid=os.stat(test_cgroup).st_ino))).cgroup_path == str(test_cgroup)


def test_cgroup_miss_rescans_at_most_once_per_interval_and_gone_is_empty() -> None:
    now = [100.0]
    cache = CgroupCache(min_rescan_s=1.0, clock=lambda: now[0])
    missing = 2**63 + 12345
    assert cache.get(missing) == ("", msgspec.UNSET)
    assert cache.get(missing) == ("", msgspec.UNSET)  # remembered: no second walk within the interval
    assert cache.rescans == 1
    now[0] += 1.5
    cache.get(missing)
    assert cache.rescans == 2


def test_type_with_high_bits_set_is_not_taken_for_a_known_type(decoder) -> None:
    rec = bytearray(_block())
    rec[2] = 1  # type 0x00010002: low byte says BLOCK
    with pytest.raises(RecordError, match="no decoder") as info:
        decoder.decode(memoryview(bytes(rec)))
    assert info.value.record_type == 0x10002


def test_empty_record_raises_record_error(decoder) -> None:
    with pytest.raises(RecordError, match="shorter than the u32 type"):
        decoder.decode(memoryview(b""))


def _decision(identity: ProcessIdentity | None, **kw: object) -> BlockDecision:
    base: dict[str, object] = dict(pid=4242, ino=99, dev=271581186, path=b"/tmp/f", path_complete=True,
                                   action=Action.BLOCK, cgid=1, ts_ns=5, exec=False, identity=identity)
    base.update(kw)
    return BlockDecision(**base)  # type: ignore[arg-type]


def test_a_fanotify_decision_gives_the_same_block_event_as_its_ring_record(decoder, event_validator) -> None:
    """One event shape whichever path decided: ids, comm, path and fields equal the ring record's."""
    ident = ProcessIdentity(pid=4242, ppid=4000, start_time=123456789, parent_start_time=1000, comm=b"cat")
    from_guard = decoder.decision(_decision(ident))
    from_ring = decoder.decode(memoryview(_block(action=ActionCode.BLOCK)))
    assert from_guard == from_ring
    out = bytearray()
    LineEncoder().append(from_guard, out)
    assert event_validator(bytes(out))[0]["exec_id"] == format_exec_id(4242, 123456789)


def test_a_decision_on_an_unidentified_opener_has_zero_ids_and_a_cut_path_says_so(decoder) -> None:
    ev = decoder.decision(_decision(None, path=b"", path_complete=False))
    assert (ev.exec_id, ev.parent_exec_id, ev.comm) == ("4242:0", "0:0", "")
    assert ev.path is msgspec.UNSET and ev.path_truncated is True
