"""``policy apply|show|export|rollback`` (docs/policy.md): the policy's way into the live rule set.

Exit codes as for rule edits (docs/cli.md): 0 applied and confirmed by the running daemon, 4 applied to the
pinned maps but no running daemon confirmed it (enforced once one runs), 1 refused or failed (nothing
changed, or the previous rules were switched back: the message says which), 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

from pybpfguard.agent import config, rulesync
from pybpfguard.agent.errors import AgentError
from pybpfguard.bpf.errors import BPFError

EXIT_OK, EXIT_FAILED, EXIT_STORED = 0, 1, 4


def _span(args: argparse.Namespace, name: str) -> contextlib.AbstractContextManager[Any]:
    tracer = getattr(args, "tracer", None)
    return tracer.span(name) if tracer is not None else contextlib.nullcontext()


def _read_input(path: str) -> tuple[bytes, str]:
    """The bytes of *path* (``-``: stdin) and the name errors use. Raises OSError."""
    if path == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    with open(path, "rb") as f:
        return f.read(), path


def _fail(args: argparse.Namespace, message: object) -> int:
    print(f"{args.prog} policy {args.action}: {message}", file=sys.stderr)
    return EXIT_FAILED


class CanaryBreach(AgentError, RuntimeError):
    """The deny rate after the switch went above the canary threshold."""


def _watch_canary(pins: Any, seconds: float, threshold: float) -> None:
    """Watch the deny rate for *seconds*; raise CanaryBreach above *threshold* denies per second."""
    from pybpfguard.cli.stats import block_counters

    start, t0 = block_counters(pins)[0], time.monotonic()
    while (elapsed := time.monotonic() - t0) < seconds:
        time.sleep(min(0.25, seconds - elapsed))
        rate = (block_counters(pins)[0] - start) / max(time.monotonic() - t0, 1e-3)
        if rate > threshold and time.monotonic() - t0 >= min(seconds, 1.0):
            raise CanaryBreach(f"canary: {rate:.1f} denies/s after the switch, above the threshold "
                               f"{threshold:g}/s")


def apply(args: argparse.Namespace) -> int:
    with _span(args, "policy.apply"):
        try:
            data, source = _read_input(args.file)
        except OSError as err:
            return _fail(args, f"{args.file}: {err.strerror}")
        return _apply_text(args, data, source)


def _open(args: argparse.Namespace, data: bytes, source: str) -> Any:
    from pybpfguard.agent.policy.bundle import open_policy

    return open_policy(data, source, require_signature=args.require_signature, sha256=args.sha256,
                       sha256_file=args.sha256_file)


def _apply_text(args: argparse.Namespace, data: bytes, source: str, *, reset: bool | None = None,
                opened: Any = None) -> int:
    """Verify, parse, resolve and apply *data*; *reset* overrides ``args.reset``; *opened* skips the bundle
    and integrity checks (``rollback`` re-applies a snapshot that passed them when it was applied)."""
    from pybpfguard.agent.policy.apply import ApplyError, apply_content, record_snapshot, switch_back
    from pybpfguard.agent.policy.model import PolicyError
    from pybpfguard.agent.policy.parse import parse_policy
    from pybpfguard.agent.policy.resolve import resolve_policy

    reset = args.reset if reset is None else reset
    try:
        if opened is None:
            opened = _open(args, data, source)
        with _span(args, "policy.apply_internal"):
            with _span(args, "policy.parse"):
                policy = parse_policy(opened.text, source)
            content = resolve_policy(policy, source)
            if getattr(args, "dry_run", False):
                print(f"dry run: {source} is valid and resolves on this host; nothing was changed")
                for name, count in content.summary().items():
                    print(f"{name}: {count}")
                for note in content.notes:
                    print(f"note: {note}")
                print("note: apply also keeps the agent's own cgroups in allow_cgroup, and without --reset the "
                      "live rules")
                return EXIT_OK
            from pybpfguard.agent.maps import PinnedMaps
            from pybpfguard.agent.rules import agent_cgids
            from pybpfguard.agent.statefiles import DenyDb

            db = DenyDb(config.state_file("deny.db"))
            with rulesync.edit_lock(db.path), PinnedMaps.open(config.pin_root()) as pins:
                result = apply_content(pins, content, reset=reset, agent_cgids=agent_cgids(), db=db,
                                       span=lambda name: _span(args, name), rollback=not args.no_rollback)
                try:
                    if getattr(args, "canary", 0) > 0:
                        _watch_canary(pins, args.canary, args.canary_threshold)
                    digest = record_snapshot(opened.text)
                    if opened.bundle is not None:
                        from pybpfguard.agent.policy.bundle import commit_version

                        commit_version(opened)
                except (CanaryBreach, OSError, AgentError) as err:
                    if args.no_rollback and not isinstance(err, CanaryBreach):
                        return _fail(args, f"the new rules are live, but recording them failed: {err}")
                    with _span(args, "policy.rollback_last_applied"):
                        generation = switch_back(pins, result.previous, db, result.previous_paths)
                        rulesync.confirm(pins.rule_sync, generation, pins.root)
                    return _fail(args, f"{err}; switched back to the previous rules")
    except PolicyError as err:
        return _fail(args, err)
    except (ApplyError, AgentError, BPFError, OSError, RuntimeError) as err:
        return _fail(args, err)
    for warning in result.warnings:
        print(f"{args.prog} policy {args.action}: note: {warning}", file=sys.stderr)
    counts = ", ".join(f"{n} {c}" for n, c in result.counts.items() if c)
    print(f"applied {source} (sha256 {digest}){': ' + counts if counts else ''}")
    return _report_outcome(args, result)


def _report_outcome(args: argparse.Namespace, result: Any) -> int:
    """Exit 0 when a running daemon confirmed the new rules and enforces every one of them, 4 otherwise
    (stored in the pinned maps, enforced once a daemon runs; or rules the daemon cannot enforce)."""
    from pybpfguard.agent.posture import Posture
    from pybpfguard.agent.runtime import posture_caveat, read_runtime

    if result.outcome is rulesync.Outcome.STORED:
        why = f" ({result.why})" if result.why else ""
        print(f"{args.prog} policy {args.action}: stored, but no running daemon confirmed it{why}: not enforced "
              f"until a daemon runs on {config.pin_root()} and picks it up (exit {EXIT_STORED})", file=sys.stderr)
        return EXIT_STORED
    running = read_runtime()
    if running is not None and running.unenforced:
        print(f"{args.prog} policy {args.action}: applied, but the running daemon cannot enforce "
              f"{len(running.unenforced)} rule(s): " + "; ".join(f"{k}: {v}" for k, v in
                                                              sorted(running.unenforced.items())[:5])
              + f" (exit {EXIT_STORED}; `block list` shows them)", file=sys.stderr)
        return EXIT_STORED
    caveat = posture_caveat()
    if running is not None and running.mode == "enforce" and Posture(running.state) is Posture.DEGRADED:
        # a rule class the daemon cannot enforce now (exec rules on a filesystem it cannot mark, ...)
        print(f"{args.prog} policy {args.action}: applied, but {caveat} (exit {EXIT_STORED})", file=sys.stderr)
        return EXIT_STORED
    if caveat:
        print(f"{args.prog} policy {args.action}: warning: {caveat}", file=sys.stderr)
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
    from pybpfguard.agent.policy.apply import read_snapshot

    try:
        text, _ = read_snapshot()
        digest = config.state_file("policy.applied.sha256").read_text().strip()
    except FileNotFoundError:
        return _fail(args, "no policy has been applied (policy.applied does not exist)")
    except OSError as err:
        return _fail(args, err)
    sys.stdout.write(f"# applied_sha256: {digest}\n")
    sys.stdout.flush()
    sys.stdout.buffer.write(text)
    return EXIT_OK


def rollback(args: argparse.Namespace) -> int:
    """Apply ``policy.applied.prev`` with reset semantics; recording it as applied moves the current snapshot
    to ``policy.applied.prev``: the snapshots swap."""
    from pybpfguard.agent.policy.apply import read_snapshot

    try:
        previous, path = read_snapshot("policy.applied.prev")
    except FileNotFoundError:
        return _fail(args, "no previous policy to roll back to (policy.applied.prev does not exist)")
    except OSError as err:
        return _fail(args, err)
    args.no_rollback = False
    with _span(args, "policy.rollback_last_applied"):
        from pybpfguard.agent.policy.bundle import OpenedPolicy

        # verified when it was applied; a bundle's counter is not committed again
        return _apply_text(args, previous, str(path), reset=True, opened=OpenedPolicy(previous, None, str(path)))


def export(args: argparse.Namespace) -> int:
    from pybpfguard.agent.policy.export import export_live

    try:
        text = export_live()
        if args.file == "-":
            sys.stdout.buffer.write(text)
        else:
            with open(args.file, "wb") as f:
                f.write(text)
    except OSError as err:
        return _fail(args, f"{args.file}: {err.strerror}" if err.filename else err)
    except (AgentError, BPFError) as err:
        return _fail(args, err)
    return EXIT_OK
