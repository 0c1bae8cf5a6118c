"""deny.db format (docs/maps.md) and path rule validation (docs/cli.md). No kernel needed."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybpfguard.agent.config import state_file
from pybpfguard.agent.paths import (
    BLOCK_ADD_MAX_BYTES,
    PathRuleError,
    check_rule_path,
    kernel_dev,
    resolve_rule_path,
)
from pybpfguard.agent.statefiles import (
    DenyDb,
    DenyDbEntry,
    StateFileError,
    escape_path,
    format_deny_db,
    parse_deny_db,
    unescape_path,
)

paths = st.binary(min_size=1, max_size=300).filter(lambda b: b"\0" not in b)


@given(paths)
def test_escape_round_trips_any_bytes_and_leaves_no_raw_newline(path):
    escaped = escape_path(path)
    assert b"\n" not in escaped
    assert unescape_path(escaped) == path


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), paths), max_size=20))
def test_deny_db_round_trips_entries_with_spaces_newlines_and_non_utf8(rows):
    entries = [DenyDbEntry(dev, ino, path) for dev, ino, path in rows]
    data = format_deny_db(entries)
    assert data.count(b"\n") == len(entries)
    assert parse_deny_db(data) == entries


def test_deny_db_line_format_is_dev_ino_then_escaped_path():
    entry = DenyDbEntry(271581186, 42, b"/tmp/a b\\c\nd")
    assert format_deny_db([entry]) == b"271581186 42 /tmp/a b\\\\c\\nd\n"


@pytest.mark.parametrize(("data", "reason"), [
    (b"1 2 /ok\nnot a rule\n", "expected '<dev> <ino> <path>'"),
    (b"1 2 /bad\\q\n", "bad escape"),
    (b"4294967296 2 /x\n", "out of range"),
])
def test_malformed_deny_db_names_file_and_line(data, reason):
    with pytest.raises(StateFileError) as info:
        parse_deny_db(data, "/state/deny.db")
    assert info.value.path == "/state/deny.db" and reason in info.value.reason
    assert str(info.value).startswith(f"/state/deny.db:{info.value.line}: ")


def test_a_partial_parse_keeps_every_good_line_and_names_each_bad_one():
    errors: list[StateFileError] = []
    data = b"1 2 /a\nnot a rule\n3 4 /b\n4294967296 2 /x\n"
    assert parse_deny_db(data, "/state/deny.db", errors) == [DenyDbEntry(1, 2, b"/a"), DenyDbEntry(3, 4, b"/b")]
    assert [(e.line, str(e).split(": ")[0]) for e in errors] == [(2, "/state/deny.db:2"), (4, "/state/deny.db:4")]


def test_deny_db_lives_in_state_dir_and_rewrites_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPFGUARD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PYBPFGUARD_DENY_DB_PATH", raising=False)
    db = DenyDb()
    assert db.path == tmp_path / "state" / "deny.db" == state_file("deny.db")
    assert db.read() == []
    a, b = DenyDbEntry(1, 10, b"/a"), DenyDbEntry(1, 11, b"/b with space")
    assert db.add(a) and db.add(b) and not db.add(a)
    assert db.read() == [a, b]
    assert db.deny_paths() == {(10, 1): b"/a", (11, 1): b"/b with space"}
    assert db.remove_key((10, 1)) == 1 and db.read() == [b]
    assert sorted(os.listdir(tmp_path / "state")) == ["deny.db"]  # no temporary file left behind
    assert (os.stat(db.path).st_mode & 0o777) == 0o600
    db.clear()
    assert not db.path.exists()


def test_deny_db_path_override_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPFGUARD_DENY_DB_PATH", str(tmp_path / "custom.db"))
    assert DenyDb().path == tmp_path / "custom.db"


@pytest.mark.parametrize(("path", "reason"), [
    ("relative/file", "relative path"),
    ("", "empty path"),
    ("/var/log/*.log", "glob characters"),
    ("/var/log/app?.log", "glob characters"),
    ("/var/log/[ab].log", "glob characters"),
    (b"/tmp/nul\0byte", "NUL"),
    ("/" + "x" * BLOCK_ADD_MAX_BYTES, "is 256 bytes, limit 255"),
])
def test_bad_rule_path_is_refused_with_error_naming_the_path(path, reason):
    with pytest.raises(PathRuleError) as info:
        check_rule_path(path, BLOCK_ADD_MAX_BYTES)
    assert reason in info.value.reason
    assert str(info.value).startswith(os.fsdecode(os.fsencode(path)) + ": ")


def test_missing_file_is_refused_with_errno(tmp_path):
    with pytest.raises(PathRuleError) as info:
        resolve_rule_path(str(tmp_path / "absent"))
    assert info.value.errno == errno.ENOENT and str(tmp_path / "absent") in str(info.value)


def test_rule_path_is_canonicalized_through_symlinks_and_dotdot(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "file"
    target.write_text("x")
    (tmp_path / "link").symlink_to(real)
    resolved = resolve_rule_path(f"{tmp_path}/link/../real/./file")
    st_ = os.stat(target)
    assert resolved.canonical == os.fsencode(target)
    assert resolved.key == (st_.st_ino, kernel_dev(st_.st_dev))


def test_kernel_dev_encoding_is_major_shift_20_or_minor():
    # docs/maps.md: major 259, minor 2 -> 271581186
    assert kernel_dev(os.makedev(259, 2)) == 271581186
    assert kernel_dev(os.makedev(8, 1)) == (8 << 20) | 1


def test_kernel_dev_matches_mountinfo_major_minor_of_tmp(tmp_path):
    st_ = os.stat(tmp_path)
    mm = f"{os.major(st_.st_dev)}:{os.minor(st_.st_dev)}"
    with open("/proc/self/mountinfo") as f:
        assert any(line.split()[2] == mm for line in f)  # the oracle: the kernel's own major:minor
    major, minor = map(int, mm.split(":"))
    assert kernel_dev(st_.st_dev) == major << 20 | minor
