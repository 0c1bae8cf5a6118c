"""Shared plumbing of the rule commands: open the pins, run one edit, tell a running daemon."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from pybpfguard.agent import config
from pybpfguard.agent.instance import request_sync
from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.paths import PathRuleError
from pybpfguard.agent.rules import RuleError
from pybpfguard.agent.statefiles import StateFileError
from pybpfguard.bpf.errors import BPFError

T = TypeVar("T")


def edit(prog: str, command: str, fn: Callable[[PinnedMaps], T], *, sync: bool = True) -> tuple[int, T | None]:
    """Run *fn* on the pinned maps (created if missing); on success ask a running daemon to re-sync.

    Returns (exit code, fn's result). Errors are printed as ``<prog> <command>: <reason>``: exit 1."""
    root = config.pin_root()
    try:
        with PinnedMaps.open(root) as pins:
            result = fn(pins)
        if sync:
            request_sync(root)
    except (RuleError, PathRuleError, StateFileError, BPFError, OSError, RuntimeError) as err:
        print(f"{prog} {command}: {err}", file=sys.stderr)
        return 1, None
    return 0, result
