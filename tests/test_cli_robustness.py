"""Every command, given bad input or a closed stdout, ends with a clear message and an exit code, never a
traceback. The commands are enumerated from the CLI's own registry, so a new command is covered at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pybpfguard.cli import COMMANDS, build_parser

pytestmark = pytest.mark.kernel


def _subcommands() -> dict[str, list[str]]:
    """command -> its actions (``block add`` ...), [] for commands without any; read from the parser."""
    import argparse

    parser = build_parser("pybpfguard")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, list[str]] = {}
    for name, command in sub.choices.items():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        out[name] = sorted(nested[0].choices) if nested else []
    return out


SUBCOMMANDS = _subcommands()

# Invocations with a bad value, a missing argument or a path that names the wrong thing; each must fail
# with 1 (the operation failed) or 2 (usage).
BAD_INPUT = [
    ["run", "--max-deny-inodes=0"], ["run", "--max-deny-paths=-1"], ["run", "--ringbuf-bytes=lots"],
    ["run", "--enforce-signal=bogus"], ["run", "--lsm-hook=nope"], ["run", "--event-sample-rate=0"],
    ["run", "--kill-escalation-threshold=0"], ["run", "--log=carrier-pigeon"], ["run", "--audit", "--enforce"],
    ["block", "add"], ["block", "add", "relative"], ["block", "add", "/nonexistent/pybpfguard/x"],
    ["block", "add", "/a*b"], ["block", "del", "/nonexistent/pybpfguard/x"], ["block", "frobnicate"],
    ["allow", "add"], ["allow", "add", "/nonexistent"], ["allow", "add", "cgid:x"], ["allow", "del", "cgid:7"],
    ["asm", "/nonexistent.s"], ["disasm", "/nonexistent.bin"], ["asm", "--isa=9"],
    ["bytecode", "--dir=/nonexistent/pybpfguard"], ["obj"], ["obj", "show", "/nonexistent.o"],
    ["obj", "show", "/etc/hostname"], ["obj", "load", "/nonexistent.o"], ["obj", "load", "/etc/hostname"],
    ["obj", "load", "/etc/hostname", "--set", "novalue"], ["obj", "frobnicate"],
    ["--log-level=loud", "version"], ["--log-format=xml", "stats"],
    ["policy", "lint", "/nonexistent.conf"], ["policy", "validate", "/nonexistent.conf"],
    ["policy", "apply", "/nonexistent.conf"], ["policy", "apply", "/etc/hostname"], ["policy", "export"],
    ["policy", "sign", "/nonexistent.conf", "--key", "/nonexistent.key", "--output", "/nonexistent/out"],
    ["policy", "lint", "/etc/hostname"], ["policy", "lint", "/etc"], ["policy", "validate", "/etc/hostname"],
    ["policy", "lint", "--out", "/nonexistent/x", "/etc/hostname"], ["policy", "lint", "--fix", "-"],
    ["policy", "canonical", "/etc/hostname"],
    ["policy", "canonical", "/nonexistent.conf"], ["policy", "bundle-canonical", "/etc/hostname"],
    ["policy", "event-canonical", "/nonexistent.json"], ["policy", "frobnicate"],
    ["keys", "add", "/nonexistent.pub"], ["keys", "add", "/etc/hostname"], ["keys", "frobnicate"],
    ["bpf", "keygen"], ["bpf", "keygen", "--out", "/nonexistent/pybpfguard/k"], ["bpf", "sign"],
    ["policy", "sign", "/etc/hostname", "--key", "/etc/hostname", "--output", "/nonexistent/out"],
    ["policy", "sign", "/etc/hostname", "--key", "/nonexistent.key", "--output", "/nonexistent/out", "--format=v3"],
    ["policy", "bundle-canonical", "/nonexistent.bundle"],
    ["simulate", "/nonexistent.jsonl", "--policy", "/nonexistent.conf"], ["simulate", "-"],
    ["explain", "/nonexistent.json"],
    ["explain", "/etc/hostname", "--policy", "/nonexistent.conf"], ["explain", "-"], ["simulate"],
    ["simulate", "/nonexistent.jsonl", "--policy", "/etc/hostname"], ["policy", "event-canonical", "/etc/hostname"],
]


@pytest.fixture
def env(bpffs, tmp_path):
    return dict(os.environ, PYBPFGUARD_PIN_ROOT=str(bpffs / "pybpfguard"), PYBPFGUARD_STATE_DIR=str(tmp_path / "st"))


def _run(args, env, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpfguard", *args], env=env, capture_output=True, text=True,
                          timeout=60, **kw)


def test_every_command_is_exercised_here():
    covered = {a[0] for a in BAD_INPUT if not a[0].startswith("--")} | {a[0] for a in _GOOD_OUTPUT}
    assert set(COMMANDS) <= covered | {"version"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_option_is_a_usage_error_for_every_command_and_action(command, env):
    for action in SUBCOMMANDS.get(command) or [None]:
        args = [command, *([action] if action else []), "--no-such-option"]
        out = _run(args, env)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr)
        assert "error:" in out.stderr  # argparse names what is wrong (the option, or a missing argument first)


@pytest.mark.parametrize("args", BAD_INPUT, ids=" ".join)
def test_bad_input_is_a_clear_error_not_a_traceback(args, env):
    out = _run(args, env)
    assert out.returncode in (1, 2) and out.stderr.strip() and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("args", [["run"], ["block", "list"], ["block", "add", "/etc/hostname"], ["allow", "list"],
                                  ["stats"], ["health"]], ids=" ".join)
def test_a_pin_root_that_is_a_regular_file_is_a_clear_error(args, env, tmp_path):
    (tmp_path / "file").write_text("")
    out = _run(args, dict(env, PYBPFGUARD_PIN_ROOT=str(tmp_path / "file")))
    said = out.stderr if args[0] != "health" else out.stdout  # health reports its findings on stdout
    assert out.returncode == 1 and "not a directory" in said and "Traceback" not in out.stderr, out


# Commands that print to stdout, with arguments that succeed.
_GOOD_OUTPUT = [["version"], ["probe"], ["probe", "--json"], ["block", "list"], ["allow", "list"], ["stats"],
                ["health"], ["health", "--json"], ["asm", "--hex"], ["disasm", "--hex"], ["bytecode", "--check"],
                ["--help"], ["run", "--help"], ["policy", "validate", "-"], ["policy", "canonical", "-"]]


def _blocked_env(env, tmp_path) -> dict[str, str]:
    target = tmp_path / "listed"
    target.write_text("x")
    subprocess.run([sys.executable, "-m", "pybpfguard", "block", "add", str(target)], env=env, timeout=60,
                   capture_output=True)
    return env


@pytest.mark.parametrize("args", _GOOD_OUTPUT, ids=" ".join)
def test_a_reader_that_went_away_ends_the_command_quietly(args, env, tmp_path):
    env = _blocked_env(env, tmp_path)
    stdin = {"asm": "r0 = 0\nexit\n" * 2000, "disasm": "b700000000000000\n9500000000000000\n" * 2000}.get(args[0], "")
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` does once it has what it wants
    try:
        out = subprocess.run([sys.executable, "-m", "pybpfguard", *args], env=env, stdout=write_end, input=stdin,
                             stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
    assert out.returncode in (0, 1)


@pytest.mark.parametrize("args", _GOOD_OUTPUT, ids=" ".join)
def test_a_closed_stdout_is_no_traceback(args, env, tmp_path):
    env = _blocked_env(env, tmp_path)
    out = subprocess.run([sys.executable, "-m", "pybpfguard", *args], env=env, stderr=subprocess.PIPE, text=True,
                         timeout=60, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(1))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode in (0, 1)


def test_bad_input_changes_nothing(env):
    before = _run(["block", "list"], env).stdout
    for args in BAD_INPUT:
        _run(args, env)
    assert _run(["block", "list"], env).stdout == before
    assert not Path(env["PYBPFGUARD_STATE_DIR"], "deny.db").exists() or before


def _command_parsers():
    import argparse

    parser = build_parser("pybpfguard")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        yield name, command
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, nested in action.choices.items():
                    yield f"{name} {sub_name}", nested


@pytest.mark.parametrize(("name", "parser"), list(_command_parsers()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_in_help_says_what_it_does_and_its_default_and_choices(name, parser):
    import argparse

    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) or not action.option_strings:
            continue
        assert action.help, f"{name} {action.option_strings[0]}: no help"
        if action.choices:
            assert all(str(c) in text for c in action.choices), (name, action.option_strings)
        plain = not isinstance(action, argparse._StoreConstAction)
        if action.default not in (None, False, argparse.SUPPRESS) and plain:
            assert "default" in action.help, f"{name} {action.option_strings[0]}: default not said"
    if " " not in name:  # a command, not one of its actions: the global options are shown too
        assert "--log-level" in text and "--log-format" in text


@pytest.mark.parametrize("layout", [None, "{", '{"format": "x"}'], ids=["missing", "not JSON", "not a layout"])
def test_a_bytecode_dir_without_a_usable_layout_is_one_error_line(layout, env, tmp_path):
    if layout is not None:
        (tmp_path / "layout.json").write_text(layout)
    for mode in ("--check", "--write"):
        out = _run(["bytecode", mode, f"--dir={tmp_path}"], env)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1 and "layout.json" in out.stderr, out.stderr


def test_ctrl_c_ends_a_command_quietly_with_130(env):
    """``asm`` waiting on a terminal-like stdin, interrupted: the shell convention (128 + SIGINT), no traceback."""
    import signal
    import time

    # SIGINT at its default in the child: a run started in the background by a non-interactive shell
    # inherits it ignored, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen([sys.executable, "-m", "pybpfguard", "asm"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while not _blocked_reading_stdin(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        # stdin stays open until the command ended: closing it first races the signal with an EOF that lets
        # the command finish normally before the pending KeyboardInterrupt is raised (seen under load)
        proc.wait(timeout=30)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT and "Traceback" not in err, err


def _blocked_reading_stdin(pid: int) -> bool:
    """Whether *pid* sits in read(2) on fd 0 (/proc/PID/syscall: the syscall number, then its arguments)."""
    import errno

    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError as err:
        assert err.errno in (errno.ESRCH, errno.ENOENT), err
        return False
    return len(fields) > 1 and fields[0] == str(_READ_NR) and int(fields[1], 16) == 0


_READ_NR = {"x86_64": 0, "aarch64": 63}.get(os.uname().machine, 0)  # __NR_read (asm/unistd_64.h)
