"""``block`` / ``allow`` through the real CLI against a private bpffs: clear errors, nothing half-applied."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pybpfguard.agent.paths import kernel_dev

pytestmark = pytest.mark.kernel

STORED = 4  # no daemon runs in these tests: an edit is stored but not confirmed (docs/architecture.md)


@pytest.fixture
def cli(bpffs, tmp_path):
    env = dict(os.environ, PYBPFGUARD_PIN_ROOT=str(bpffs / "pybpfguard"), PYBPFGUARD_STATE_DIR=str(tmp_path / "st"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pybpfguard", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    return run


def _state(cli) -> tuple[str, str]:
    return cli("block", "list").stdout, cli("allow", "list").stdout


@pytest.mark.parametrize(("arg", "reason"), [
    ("relative/file", "relative path"),
    ("/nonexistent/pybpfguard-test-file", "cannot resolve"),
    ("/var/log/*.log", "glob characters are not supported"),
])
def test_block_add_refuses_bad_paths_with_a_clear_error_and_changes_nothing(cli, arg, reason):
    before = _state(cli)
    out = cli("block", "add", arg)
    assert out.returncode == 1 and reason in out.stderr and arg in out.stderr
    assert _state(cli) == before


def test_allow_add_refuses_a_directory_that_is_not_a_cgroup(cli, tmp_path):
    out = cli("allow", "add", str(tmp_path))
    assert out.returncode == 1 and "not a cgroup v2 directory" in out.stderr
    assert cli("allow", "add", "cgid:abc").returncode == 1
    assert cli("allow", "list").stdout == ""


def test_block_add_records_inode_path_and_deny_db_and_del_removes_all_three(cli, tmp_path):
    target = tmp_path / "name with spaces"
    target.write_text("x")
    st = os.stat(target)
    dev = kernel_dev(st.st_dev)
    assert cli("block", "add", str(target)).returncode == STORED
    assert cli("block", "list").stdout == f"{target} ({dev}:{st.st_ino})\n"
    assert (tmp_path / "st" / "deny.db").read_text() == f"{dev} {st.st_ino} {target}\n"
    assert cli("block", "del", str(target)).returncode == STORED
    assert cli("block", "list").stdout == ""
    assert (tmp_path / "st" / "deny.db").read_text() == ""


def test_block_clear_empties_rules_and_counters_but_keeps_pins(cli, tmp_path, test_cgroup, bpffs):
    target = tmp_path / "f"
    target.write_text("x")
    assert cli("block", "add", str(target)).returncode == STORED
    assert cli("allow", "add", str(test_cgroup)).returncode == STORED
    assert cli("allow", "list").stdout == f"cgid:{os.stat(test_cgroup).st_ino}\n"
    assert cli("block", "clear").returncode == STORED
    assert _state(cli) == ("", "")
    assert cli("stats").stdout == "blocks_total 0\nringbuf_drops_total 0\n"
    assert (bpffs / "pybpfguard" / "survival_allowlist").exists()


def test_deleting_a_rule_that_does_not_exist_says_so(cli, tmp_path):
    (tmp_path / "never-blocked").write_text("x")
    out = cli("block", "del", str(tmp_path / "never-blocked"))
    assert out.returncode == 1 and "no rule for this path" in out.stderr
    out = cli("allow", "del", "cgid:123456")
    assert out.returncode == 1 and "not in allow_cgroup" in out.stderr


def test_block_del_of_leftover_records_without_an_inode_rule_is_not_success(cli, tmp_path, bpffs):
    from pybpfguard.agent.maps import INODE_KEY, PinnedMaps

    target = tmp_path / "f"
    target.write_text("x")
    st = os.stat(target)
    assert cli("block", "add", str(target)).returncode == STORED
    with PinnedMaps.open(bpffs / "pybpfguard", create=False) as pins:  # the inode rule went another way
        pins.deny_inode.delete_elem(INODE_KEY.value(ino=st.st_ino, dev=kernel_dev(st.st_dev)))
    out = cli("block", "del", str(target))
    assert out.returncode == 1 and "no rule for this path" in out.stderr and "leftover records" in out.stderr
    assert (tmp_path / "st" / "deny.db").read_text() == ""  # the leftovers are tidied all the same


def test_block_del_removes_the_rule_of_the_file_the_path_names_not_an_older_file_once_recorded_there(cli, tmp_path):
    # an editor's save or a log rotation: the denied file moves aside (still denied: the rule is on its
    # inode), a new file takes the name and is denied too
    path, moved = tmp_path / "f", tmp_path / "f.old"
    path.write_text("old")
    old = os.stat(path)
    assert cli("block", "add", str(path)).returncode == STORED
    path.rename(moved)
    path.write_text("new")
    new = os.stat(path)
    assert cli("block", "add", str(path)).returncode == STORED
    out = cli("block", "del", str(path))
    assert out.returncode == STORED, out.stderr
    assert "1 other rule recorded under this path remains" in out.stderr
    dev = kernel_dev(old.st_dev)
    assert cli("block", "list").stdout == f"{path} ({dev}:{old.st_ino})\n"  # the moved file stays denied
    assert (tmp_path / "st" / "deny.db").read_text() == f"{dev} {old.st_ino} {path}\n"
    # asked again: the path now names a file without a rule, so the rule recorded under it goes
    assert cli("block", "del", str(path)).returncode == STORED
    assert cli("block", "list").stdout == ""
    assert new.st_ino != old.st_ino


def test_block_add_records_a_file_handle_and_del_and_clear_remove_it(cli, tmp_path):
    from pybpfguard.agent.handlestore import HandleDb

    handles = HandleDb(tmp_path / "st" / "deny.handles")
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("x")
    b.write_text("y")
    cli("block", "add", str(a))
    cli("block", "add", str(b))
    key_a, key_b = ((os.stat(p).st_ino, kernel_dev(os.stat(p).st_dev)) for p in (a, b))
    assert set(handles.read()) == {key_a, key_b}
    cli("block", "del", str(a))
    assert set(handles.read()) == {key_b}
    cli("block", "clear")
    assert handles.read() == {}
