"""Locations the agent trusts (pin root, state directory, run directory, pins) must be changeable by no
other local user: a hostile user who gets there first is refused, not obeyed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pybpfguard.agent.trust import UntrustedPathError, require_private_dir, require_private_file

pytestmark = pytest.mark.kernel

NOBODY = 65534


def as_nobody(script: str) -> subprocess.CompletedProcess[str]:
    """Run the shell *script* as uid/gid 65534: an unprivileged local user."""
    def drop() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    return subprocess.run(["/bin/sh", "-c", script], preexec_fn=drop, capture_output=True, text=True,
                          timeout=30, cwd="/")


@pytest.fixture
def env(bpffs, tmp_path):
    return dict(os.environ, PYBPFGUARD_PIN_ROOT=str(bpffs / "pybpfguard"), PYBPFGUARD_STATE_DIR=str(tmp_path / "st"))


def cli(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpfguard", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_pin_root_created_first_by_another_user_is_refused_by_block_add_and_run(env, bpffs, tmp_path):
    pin_root = bpffs / "pybpfguard"
    made = as_nobody(f"mkdir -m 755 '{pin_root}'")
    assert made.returncode == 0, made.stderr
    target = tmp_path / "secret"
    target.write_text("x")
    for args in (("block", "add", str(target)), ("run", "--enforce")):
        out = cli(env, *args)
        assert out.returncode == 1, (args, out.stderr)
        assert f"{pin_root}: directory owned by uid {NOBODY}" in out.stderr and "Traceback" not in out.stderr
    assert os.listdir(pin_root) == []  # nothing was pinned where that user could touch it
    assert not (tmp_path / "st" / "deny.db").exists()


def test_a_symlinked_pin_root_owned_by_another_user_is_refused(env, bpffs, tmp_path):
    theirs = bpffs / "theirs"
    out = as_nobody(f"mkdir -m 777 '{theirs}' && ln -s '{theirs}' '{bpffs / 'pybpfguard'}'")
    assert out.returncode == 0, out.stderr
    target = tmp_path / "secret"
    target.write_text("x")
    out = cli(env, "block", "add", str(target))
    assert out.returncode == 1 and f"is a symlink owned by uid {NOBODY}" in out.stderr, out.stderr
    assert os.listdir(theirs) == []


def test_a_state_dir_writable_by_others_is_refused_and_nothing_changes(env, tmp_path):
    state = tmp_path / "st"
    state.mkdir(mode=0o777)
    os.chmod(state, 0o777)
    target = tmp_path / "secret"
    target.write_text("x")
    out = cli(env, "block", "add", str(target))
    assert out.returncode == 1 and "writable by group or other (mode 0777)" in out.stderr, out.stderr
    assert cli(env, "block", "list").stdout == ""  # the map write was undone
    # an agent cgroup that cannot work: were the state dir not refused first, run would still stop early
    out = cli(dict(env, PYBPFGUARD_AGENT_CGROUP=str(tmp_path / "not-a-cgroup")), "run", "--enforce")
    assert out.returncode == 1 and "writable by group or other (mode 0777)" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and os.listdir(state) == []


def test_the_agents_own_pins_cannot_be_renamed_by_another_user(env, bpffs, tmp_path):
    target = tmp_path / "secret"
    target.write_text("x")
    assert cli(env, "block", "add", str(target)).returncode in (0, 4)
    pin_root = bpffs / "pybpfguard"
    assert os.stat(pin_root).st_mode & 0o777 == 0o700
    out = as_nobody(f"mv '{pin_root / 'deny_inode'}' '{bpffs / 'stolen'}'")
    assert out.returncode != 0 and "Permission denied" in out.stderr, out.stderr
    assert (pin_root / "deny_inode").exists()


def test_a_pin_that_is_not_the_agents_own_is_refused(bpffs, tmp_path):
    pin = bpffs / "pybpfguard"
    require_private_dir(pin)
    other = bpffs / "pybpfguard" / "deny_inode"
    other.symlink_to(tmp_path)
    with pytest.raises(UntrustedPathError, match="a symlink where a file of the agent's belongs"):
        require_private_file(other)


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o775])
def test_a_group_or_other_writable_directory_is_refused(tmp_path, mode):
    d = tmp_path / "run"
    d.mkdir()
    os.chmod(d, mode)
    with pytest.raises(UntrustedPathError, match="writable by group or other"):
        require_private_dir(d)


def test_a_missing_private_dir_is_created_0700_below_a_writable_parent_only_if_sticky(tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    made = require_private_dir(sticky / "a" / "b")
    assert os.stat(made).st_mode & 0o777 == 0o700
    open_parent = tmp_path / "open"
    open_parent.mkdir()
    os.chmod(open_parent, 0o777)
    with pytest.raises(UntrustedPathError, match="writable by other users"):
        require_private_dir(open_parent / "c")
    assert not (open_parent / "c").exists()


def test_a_regular_file_where_the_pin_root_belongs_is_a_clear_error(env, tmp_path):
    (tmp_path / "file").write_text("")
    env = dict(env, PYBPFGUARD_PIN_ROOT=str(tmp_path / "file"))
    for args in (("run",), ("block", "list")):
        out = cli(env, *args)
        assert out.returncode == 1 and "not a directory" in out.stderr and "Traceback" not in out.stderr, out.stderr
    with pytest.raises(NotADirectoryError):
        require_private_dir(tmp_path / "file")


def test_health_and_stats_name_a_pin_root_another_user_made_instead_of_a_traceback(env, bpffs):
    pin_root = bpffs / "pybpfguard"
    made = as_nobody(f"mkdir -m 755 '{pin_root}'")
    assert made.returncode == 0, made.stderr
    for args in (("stats",), ("health",), ("health", "--json")):
        out = cli(env, *args)
        assert out.returncode == 1 and "Traceback" not in out.stderr, (args, out.stderr)
        assert f"{pin_root}: directory owned by uid {NOBODY}" in out.stdout + out.stderr, (args, out)
    assert os.listdir(pin_root) == []


def test_health_and_stats_name_pins_in_a_directory_others_can_write(env, bpffs):
    assert cli(env, "block", "list").returncode == 0  # the pins exist, made by the agent
    pin_root = bpffs / "pybpfguard"
    os.chmod(pin_root, 0o777)  # as a careless administrator would
    for args in (("stats",), ("health",)):
        out = cli(env, *args)
        assert out.returncode == 1 and "Traceback" not in out.stderr, (args, out.stderr)
        assert "writable by group or other (mode 0777)" in out.stdout + out.stderr, (args, out)


def test_a_dotdot_after_another_users_symlink_is_resolved_as_the_kernel_does_and_refused(env, bpffs, tmp_path):
    # the kernel follows 'evil' before applying '..': the path leads into that user's directory, whatever
    # '/evil/../pybpfguard' looks like as text
    theirs = bpffs / "u"
    out = as_nobody(f"mkdir -m 777 '{theirs}' '{theirs}/d' '{theirs}/pybpfguard' && ln -s '{theirs}/d' "
                    f"'{bpffs / 'evil'}'")
    assert out.returncode == 0, out.stderr
    target = tmp_path / "secret"
    target.write_text("x")
    out = cli(dict(env, PYBPFGUARD_PIN_ROOT=f"{bpffs}/evil/../pybpfguard"), "block", "add", str(target))
    assert out.returncode == 1 and f"is a symlink owned by uid {NOBODY}" in out.stderr, out.stderr
    assert os.listdir(theirs / "pybpfguard") == [] and not (bpffs / "pybpfguard").exists()
