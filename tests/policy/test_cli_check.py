"""``policy lint``, ``policy validate`` and ``policy canonical`` through the command line (docs/policy.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, PYBPFGUARD_STATE_DIR=str(tmp_path / "state"), PYBPFGUARD_CONFIG_DIR=str(tmp_path / "cfg"))


def _policy(env, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "pybpfguard", "policy", *args], env=env, capture_output=True,
                         input=stdin.decode() if stdin is not None else None, text=True, timeout=60,
                         stdin=subprocess.DEVNULL if stdin is None else None)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def _write(tmp_path: Path, text: str, name: str = "p.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lint_reports_the_first_error_with_file_and_line(env, tmp_path):
    path = _write(tmp_path, "version=6\n[deny_ip]\n10.0.0.1\nexample.com\n[deny_port]\n99999\n")
    out = _policy(env, "lint", str(path))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == f"{path}: line 4: 'example.com' is a hostname; give an IPv4 or IPv6 address\n"


def test_lint_prints_advisories_and_notices_on_stdout_and_exits_0(env, tmp_path):
    path = _write(tmp_path, "[deny_inode]\n1:2\n1:2\n[deny_port]\n22\n")
    out = _policy(env, "lint", str(path))
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.splitlines() == [
        f"{path}: warning: no version header; the policy is read as version=1 (add version=N first)",
        f"{path}: line 3: warning: duplicate [deny_inode] entry (first at line 2); dropped",
        f"{path}: line 4: notice: [deny_port] is accepted but not enforced by this release (network enforcement "
        "is not in this release); policy apply refuses it"]


def test_lint_of_a_clean_policy_prints_nothing(env, tmp_path):
    out = _policy(env, "lint", str(_write(tmp_path, "version=1\n[deny_inode]\n1:2\n")))
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_lint_fix_writes_the_canonical_form_next_to_the_file_and_is_stable(env, tmp_path):
    path = _write(tmp_path, (GOLDEN / "all_sections.conf").read_text())
    out = _policy(env, "lint", "--fix", str(path))
    fixed = Path(f"{path}.fixed")
    assert out.returncode == 0 and f"canonical form written to {fixed}" in out.stdout
    assert fixed.read_bytes() == (GOLDEN / "all_sections.canonical").read_bytes()
    assert fixed.stat().st_mode & 0o777 == 0o644
    again = _policy(env, "lint", "--fix", str(fixed), "--out", str(tmp_path / "twice"))
    assert again.returncode == 0 and (tmp_path / "twice").read_bytes() == fixed.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.conf", "p.conf.fixed", "twice"]  # no temporary left


def test_lint_fix_out_dash_writes_stdout_and_reports_on_stderr(env, tmp_path):
    path = _write(tmp_path, "version=1\n[deny_comm]\nsh\nsh\n")
    out = _policy(env, "lint", "--fix", "--out", "-", str(path))
    assert out.returncode == 0 and out.stdout == "version=1\n[deny_comm]\nsh\n"
    assert "survival-list binary" in out.stderr and "duplicate [deny_comm]" in out.stderr


def test_lint_fix_reads_stdin(env, tmp_path):
    out = _policy(env, "lint", "-", "--fix", "--out", str(tmp_path / "o"), stdin=b"[deny_inode]\n2:1\n1:2\n")
    assert out.returncode == 0 and "<stdin>: warning: no version header" in out.stdout
    assert (tmp_path / "o").read_text() == "version=1\n[deny_inode]\n1:2\n2:1\n"


def test_lint_fix_writes_nothing_when_the_policy_has_an_error(env, tmp_path):
    path = _write(tmp_path, "[deny_path]\nrelative\n")
    out = _policy(env, "lint", "--fix", str(path))
    assert out.returncode == 1 and out.stderr == f"{path}: line 2: relative path; rules need an absolute path\n"
    assert not Path(f"{path}.fixed").exists()


def test_lint_option_misuse_is_a_usage_error(env, tmp_path):
    path = str(_write(tmp_path, "version=1\n"))
    for args in (["lint", "--out", "x", path], ["lint", "--fix", "-"], ["lint", "--fix", "--out", "", path]):
        out = _policy(env, *args, stdin=b"version=1\n")
        assert out.returncode == 2 and "policy lint: --" in out.stderr, args
    assert not (tmp_path / "x").exists()


def test_lint_fix_to_a_directory_that_does_not_exist_fails_clearly(env, tmp_path):
    path = _write(tmp_path, "version=1\n")
    out = _policy(env, "lint", "--fix", "--out", str(tmp_path / "no" / "out"), str(path))
    assert out.returncode == 1 and "No such file or directory" in out.stderr


@pytest.mark.parametrize("action", ["lint", "validate", "canonical"])
def test_an_unreadable_file_is_a_clear_error(env, tmp_path, action):
    for target in (tmp_path / "missing.conf", tmp_path):
        out = _policy(env, action, str(target))
        assert out.returncode == 1 and f"policy {action}: {target}: " in out.stderr and out.stdout == ""


def test_validate_prints_a_summary_and_the_notices(env, tmp_path):
    path = _write(tmp_path, "version=6\n[deny_path]\n/nonexistent/x\n/nonexistent/x\n[deny_port]\n22\n[deny_bpf]\n"
                            "[deny_comm]\n")
    out = _policy(env, "validate", str(path))
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.splitlines() == [
        f"{path}: version 6, 4 sections, 2 entries",
        "  [deny_path]              1 entry",
        "  [deny_port]              1 entry",
        "  [deny_comm]              0 entries",
        "  [deny_bpf]               flag",
        "  1 duplicate entry dropped",
        f"{path}: line 5: notice: [deny_port] is accepted but not enforced by this release (network enforcement "
        "is not in this release); policy apply refuses it",
        f"{path}: line 7: notice: [deny_bpf] is accepted but not enforced by this release (the kernel-tamper hooks "
        "are not in this release); policy apply refuses it"]


def test_validate_verbose_lists_every_entry_in_canonical_spelling(env):
    out = _policy(env, "validate", "-v", "-", stdin=b"[deny_port]\n8080::connect\n[deny_inode]\n01:2\n")
    assert out.returncode == 0
    assert out.stdout.splitlines()[:5] == [
        "<stdin>: version 1 (no version header), 2 sections, 2 entries",
        "  [deny_inode]             1 entry", "    line 4: 1:2",
        "  [deny_port]              1 entry", "    line 2: 8080:any:egress"]


def test_validate_reports_errors_like_lint(env, tmp_path):
    path = _write(tmp_path, "version=2\n[scan_paths]\n/x\n")
    out = _policy(env, "validate", str(path))
    assert out.returncode == 1
    assert out.stderr == f"{path}: line 2: [scan_paths] needs version=3 or later (this policy is version 2)\n"


def test_canonical_prints_the_canonical_form(env):
    out = _policy(env, "canonical", str(GOLDEN / "example.conf"))
    assert out.returncode == 0 and out.stdout == (GOLDEN / "example.canonical").read_text()


def test_parse_and_validate_touch_nothing_but_the_file(monkeypatch, capsys):
    import argparse
    import builtins

    from pybpfguard.agent.policy.lint import advisories
    from pybpfguard.agent.policy.parse import parse_policy
    from pybpfguard.cli import policy_check

    data = (GOLDEN / "all_sections.conf").read_bytes()
    real_open = builtins.open

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"filesystem access: {args}")

    def open_only_the_policy(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path) != "policy.conf":
            refuse(path)
        return real_open(GOLDEN / "all_sections.conf", *args, **kwargs)

    for name in ("stat", "lstat", "access", "listdir", "scandir", "readlink"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(builtins, "open", open_only_the_policy)
    policy = parse_policy(data, "p.conf")
    advisories(policy, host=False)
    args = argparse.Namespace(file="policy.conf", verbose=True, prog="pybpfguard", action="validate")
    assert policy_check.validate(args) == 0
    assert capsys.readouterr().out.startswith("policy.conf: version 6, 23 sections")
