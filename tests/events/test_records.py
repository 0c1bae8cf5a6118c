"""The ring record layouts: one table each, pinned to docs/records.md, offsets for the generators."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from pybpfguard.agent.events.layout import Layout, LayoutError
from pybpfguard.agent.events.records import BLOCK, EXEC, EXEC_ARGV, LAYOUTS, PATH_MAX, RecordType

DOC = Path(__file__).resolve().parents[2] / "docs" / "records.md"


def test_every_record_table_and_size_in_docs_records_md_equals_the_code() -> None:
    doc = DOC.read_text()
    for layout in LAYOUTS:
        section = doc.split(f"## {layout.name} (type {int(layout.record_type)})", 1)[1].split("\n## ", 1)[0]
        assert f"Fixed size: {layout.size} bytes; largest record: {layout.max_size} bytes." in section
        assert layout.markdown() in section


def test_struct_sizes_are_the_documented_ones() -> None:
    assert (EXEC.size, BLOCK.size, EXEC_ARGV.size) == (104, 72, 24)
    assert (EXEC.struct.size, BLOCK.struct.size, EXEC_ARGV.struct.size) == (104, 72, 24)
    assert BLOCK.max_size == 72 + PATH_MAX - 1


def test_type_is_u32_at_offset_0_with_aegisbpf_numbers() -> None:
    assert [(lay.offset("type"), lay.field("type").ctype) for lay in LAYOUTS] == [(0, "u32")] * 3
    assert (RecordType.EXEC, RecordType.BLOCK, RecordType.EXEC_ARGV, RecordType.OVERLAY_COPY_UP) == (1, 2, 3, 30)
    assert [int(t) for t in RecordType if 10 <= t <= 22] == [10, 11, 12, 13, 14, 15, 20, 21, 22]


def test_generator_offsets_put_each_value_where_the_decoder_reads_it() -> None:
    rec = BLOCK.pack(pid=0x11223344, ino=0xA1B2C3D4E5F60718, dev=0x0FF00001, action=2, cgid=77, path=b"/x")
    assert struct.unpack_from("<I", rec, BLOCK.offset("pid"))[0] == 0x11223344
    assert struct.unpack_from("<Q", rec, BLOCK.offset("ino"))[0] == 0xA1B2C3D4E5F60718
    assert struct.unpack_from("<I", rec, BLOCK.offset("dev"))[0] == 0x0FF00001
    assert rec[BLOCK.offset("action")] == 2
    assert struct.unpack_from("<H", rec, BLOCK.offset("path_len"))[0] == 2
    assert rec[BLOCK.offset("path"):] == b"/x"


def test_exec_and_block_share_the_first_56_bytes_of_process_identity() -> None:
    shared = [f for f in BLOCK.fields if f.offset < 56]
    assert shared == [f for f in EXEC.fields if f.offset < 56]
    assert sum(f.size for f in shared) == 56


@pytest.mark.parametrize(("rows", "complaint"), [
    ([("type", 0, "u32"), ("start_time", 4, "u64")], "not aligned"),
    ([("type", 0, "u32"), ("pid", 8, "u32")], "previous field ends at 4"),
    ([("type", 0, "u32"), ("pid", 4, "u16")], "not a multiple of 8"),
    ([("pid", 0, "u32"), ("type", 4, "u32")], "u32 type at offset 0"),
    ([("type", 0, "u32"), ("x", 4, "f32")], "unknown ctype"),
])
def test_inconsistent_layout_table_is_refused_naming_the_field(rows: list, complaint: str) -> None:
    with pytest.raises(LayoutError, match=re.escape(complaint)):
        Layout("bad", 99, rows)


def test_decoder_unpack_order_is_checked_against_the_table() -> None:
    with pytest.raises(LayoutError, match="decoder expects"):
        BLOCK.require_unpack_order("type", "pid")
