"""``simulate <events.jsonl|-> --policy P [--per-event] [--json]`` (docs/policy.md, "Simulate and explain").

Replays ``block`` and ``net_*_block`` event lines against a candidate policy with the enforcement path's
own decision models (:mod:`pybpfguard.agent.policy.replay`) and counts what the policy would do. Exit 0
with the counts; 1 when the policy or the events file cannot be read, or the policy does not parse.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pybpfguard.agent.policy.replay import Counts, Outcome, Replayed, read_events, replay, rule_text
from pybpfguard.cli._replay import InputError, load_policy, open_input, warn_policy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", help="event lines as the agent writes them (JSON lines), or - for stdin")
    parser.add_argument("--policy", required=True, metavar="P", help="the candidate policy file")
    parser.add_argument("--per-event", action="store_true", help="also print the outcome of every event line")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _per_event(r: Replayed) -> dict[str, Any]:
    out: dict[str, Any] = {"line": r.line, "outcome": r.outcome.value}
    if r.event_type:
        out["type"] = r.event_type
    if r.rule is not None:
        out["rule"] = rule_text(r.rule)
    if r.reason:
        out["reason"] = r.reason
    return out


def _text_line(r: Replayed) -> str:
    parts = [f"line {r.line}:", r.outcome.value]
    if r.event_type:
        parts.append(r.event_type)
    if r.rule is not None:
        parts.append(rule_text(r.rule) or "")
    if r.reason and r.outcome in (Outcome.SKIPPED_INVALID, Outcome.SKIPPED_NON_BLOCK, Outcome.WOULD_ALLOW):
        parts.append(f"({r.reason})")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    try:
        policy, sets = load_policy(args.policy, getattr(args, "tracer", None))
        source = open_input(args.events, "events")
    except InputError as err:
        print(f"{args.prog} simulate: {err}", file=sys.stderr)
        return 1
    warn_policy(args.prog, "simulate", policy, sets)
    counts = Counts()
    per_event: list[dict[str, Any]] = []
    try:
        for r in replay(sets, policy, read_events(source)):
            counts.add(r.outcome)
            if args.per_event and args.json:
                per_event.append(_per_event(r))
            elif args.per_event:
                print(_text_line(r))
    except OSError as err:
        print(f"{args.prog} simulate: cannot read events {args.events}: {err.strerror}", file=sys.stderr)
        return 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    totals = counts.as_dict()
    if args.json:
        doc: dict[str, Any] = {"policy": args.policy, **totals}
        if args.per_event:
            doc["events"] = per_event
        print(json.dumps(doc, separators=(",", ":")))
    else:
        for name, value in totals.items():
            print(f"{name} {value}")
    return 0
