"""Shared plumbing of the rule commands: lock, open the pins, run one edit, have a running daemon confirm it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TypeVar

from pybpfguard.agent import config, rulesync
from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.paths import PathRuleError
from pybpfguard.agent.rules import RuleError
from pybpfguard.agent.runtime import posture_caveat
from pybpfguard.agent.statefiles import StateFileError
from pybpfguard.bpf.errors import BPFError

T = TypeVar("T")

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_STORED = 4  # the edit is stored, but no running daemon confirmed it (docs/architecture.md)


def edit(prog: str, command: str, fn: Callable[[PinnedMaps], T], *, sync: bool = True) -> tuple[int, T | None]:
    """Run *fn* on the pinned maps (created if missing). With *sync* (an edit): under the rule-edit lock,
    then count the edit and wait briefly for a running daemon to confirm it (:mod:`pybpfguard.agent.rulesync`).

    Returns (exit code, fn's result): 0 done (and confirmed by a running daemon, when one is needed), 4 stored
    but not confirmed by a running daemon, 1 failed (printed as ``<prog> <command>: <reason>``)."""
    root = config.pin_root()
    try:
        with contextlib.ExitStack() as stack:
            lock = stack.enter_context(contextlib.ExitStack())
            if sync:  # taken before the pins are opened: creating missing pins is part of the edit
                lock.enter_context(rulesync.edit_lock(config.state_file("deny.db")))
            pins = stack.enter_context(PinnedMaps.open(root))
            result = fn(pins)
            if not sync:
                return EXIT_OK, result
            generation = rulesync.bump_generation(pins.rule_sync)
            lock.close()  # other edits need not wait while this one waits for its confirmation
            outcome, why = rulesync.confirm(pins.rule_sync, generation, root)
    except (RuleError, PathRuleError, StateFileError, BPFError, OSError, RuntimeError) as err:
        print(f"{prog} {command}: {err}", file=sys.stderr)
        return EXIT_FAILED, None
    if outcome is rulesync.Outcome.STORED:
        print(f"{prog} {command}: stored, but no running daemon confirmed it{f' ({why})' if why else ''}: not "
              f"enforced until a daemon runs on {root} and picks it up (exit {EXIT_STORED})", file=sys.stderr)
        return EXIT_STORED, result
    if caveat := posture_caveat():
        print(f"{prog} {command}: warning: {caveat}", file=sys.stderr)
    return EXIT_OK, result
