"""deny.handles: its format round-trips, a malformed line is named, and a handle re-finds its inode by itself."""

from __future__ import annotations

import os

import pytest

from pybpfguard.agent.fhandle import FileHandle
from pybpfguard.agent.handlestore import (
    HandleDb,
    HandleError,
    HandleRecord,
    format_handles,
    parse_handles,
    reopen,
    take_handle,
)
from pybpfguard.agent.paths import inode_key
from pybpfguard.agent.statefiles import StateFileError


def test_records_round_trip_with_odd_mount_points_and_the_last_line_wins(tmp_path):
    a = HandleRecord(1, 2, FileHandle(1, b"\x00\xff"), b"/mnt/with space\nand newline\\")
    b = HandleRecord(1, 2, FileHandle(-3, b""), b"/")
    assert parse_handles(format_handles([a])) == {(2, 1): a}
    assert parse_handles(format_handles([a, b])) == {(2, 1): b}
    db = HandleDb(tmp_path / "deny.handles")
    db.put(a)
    db.put(HandleRecord(5, 6, FileHandle(1, b"\x01"), b"/"))
    db.remove_keys({(2, 1)})
    assert list(db.read()) == [(6, 5)]
    db.clear()
    assert db.read() == {}


@pytest.mark.parametrize("line", [b"1 2 1 zz /", b"1 2 1 00", b"x 2 1 00 /", b"1 2 one 00 /"])
def test_a_malformed_line_is_an_error_naming_the_file_and_line(line):
    with pytest.raises(StateFileError) as err:
        parse_handles(b"\n" + line + b"\n", "deny.handles")
    assert err.value.line == 2 and str(err.value).startswith("deny.handles:2:")


def test_a_handle_reopens_the_renamed_inode_and_says_when_it_was_deleted(kernel, tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    key = inode_key(os.stat(path))
    record = take_handle(os.fsencode(path), key)
    path.rename(tmp_path / "g")
    fd = reopen(record)
    try:
        assert inode_key(os.fstat(fd)) == key
    finally:
        os.close(fd)
    (tmp_path / "g").unlink()
    with pytest.raises(HandleError, match="deleted"):
        reopen(record)
