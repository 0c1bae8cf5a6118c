"""What ``simulate`` and ``explain`` share: reading a policy file into its rule sets, and an input file or
stdin, each failure a one-line message naming the file (docs/policy.md, "Simulate and explain")."""

from __future__ import annotations

import contextlib
import sys
from typing import BinaryIO

from pybpfguard.agent.logs import Tracer
from pybpfguard.agent.policy.model import Policy, PolicyError
from pybpfguard.agent.policy.ruleset import RuleSets, rule_sets_from_policy


class InputError(Exception):
    """A file cannot be read or parsed; the message names it (exit 1)."""


def read_bytes(path: str, what: str) -> bytes:
    """The content of *path* (``-``: stdin). Raises InputError naming the file."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror}") from None


def open_input(path: str, what: str) -> BinaryIO:
    """*path* opened for reading in binary (``-``: stdin). Raises InputError naming the file."""
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror}") from None


def load_policy(path: str, tracer: Tracer | None, data: bytes | None = None) -> tuple[Policy, RuleSets]:
    """Parse the policy *data* (default: the content of the file *path*) and resolve its rule sets on this
    host, leniently: an entry that does not resolve is listed in ``unresolved``, not an error. Raises
    InputError (unreadable file, or the parse error naming file and line). *tracer*: the invocation's
    (``args.tracer``), for the ``policy.parse`` span; None when span logs are off."""
    from pybpfguard.agent.policy.parse import parse_policy

    if data is None:
        data = read_bytes(path, "policy")
    try:
        with tracer.span("policy.parse") if tracer is not None else contextlib.nullcontext():
            policy = parse_policy(data, path)
    except PolicyError as err:
        raise InputError(str(err)) from None
    return policy, rule_sets_from_policy(policy, source=path)


def warn_policy(prog: str, command: str, policy: Policy, sets: RuleSets) -> None:
    """A notice per section this release does not enforce yet (simulated all the same) and per section the
    replay cannot decide, and a warning per entry that did not resolve on this host."""
    from pybpfguard.agent.policy.replay import not_simulated, unresolved_text
    from pybpfguard.agent.policy.support import unsupported

    for section, line, reason in unsupported(policy):
        print(f"{prog} {command}: notice: line {line}: [{section.value}] is not enforced by this release "
              f"({reason}); it is simulated as its enforcement will decide", file=sys.stderr)
    for note in not_simulated(policy):
        print(f"{prog} {command}: notice: {note}", file=sys.stderr)
    for u in sets.file.unresolved:
        print(f"{prog} {command}: warning: {unresolved_text(u)}", file=sys.stderr)
