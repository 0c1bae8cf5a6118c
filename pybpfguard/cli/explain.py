"""``explain <event.json|-> [--policy F] [--json]`` and ``policy event-canonical <file>`` (docs/policy.md,
"Simulate and explain").

``explain`` tells why one ``block`` or ``net_*_block`` event would (or would not) happen under a policy:
the applied snapshot (``policy.applied`` in the state directory) unless ``--policy`` names a file.
``event-canonical`` prints events in the agent's own encoding: JSON events re-encoded (fixed field order,
compact), or a raw ring record decoded.
"""

from __future__ import annotations

import argparse
import json
import sys

import msgspec

from pybpfguard.agent import config
from pybpfguard.agent.policy.replay import Outcome, explain, read_event, rule_text
from pybpfguard.cli._replay import InputError, load_policy, read_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event", help="one event as the agent writes it (JSON), or - for stdin")
    parser.add_argument("--policy", metavar="F", help="explain against this policy file instead of the applied one")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _one_json(data: bytes) -> bytes:
    """The event's JSON text: the whole input, or its first non-blank line when the input is JSON lines."""
    try:
        msgspec.json.decode(data)
        return data
    except msgspec.DecodeError:
        return next((line for line in data.splitlines() if line.strip()), data)


def _applied() -> tuple[str, bytes]:
    """The applied snapshot's path and text. Raises InputError when there is none."""
    from pybpfguard.agent.policy.apply import read_snapshot

    try:
        text, path = read_snapshot()
    except FileNotFoundError:
        raise InputError(f"no applied policy ({config.state_file('policy.applied')}); give one with --policy") \
            from None
    except OSError as err:
        raise InputError(f"cannot read the applied policy {config.state_file('policy.applied')}: {err.strerror}") \
            from None
    return str(path), text


def run(args: argparse.Namespace) -> int:
    try:
        data = read_bytes(args.event, "event")
        read = read_event(_one_json(data))
        if read.event is None:
            kind = "not a block or net_*_block event" if read.skipped is Outcome.SKIPPED_NON_BLOCK else "invalid"
            raise InputError(f"event {args.event}: {kind}: {read.reason}")
        policy_path, text = (args.policy, None) if args.policy else _applied()
        policy, sets = load_policy(policy_path, getattr(args, "tracer", None), text)
    except InputError as err:
        print(f"{args.prog} explain: {err}", file=sys.stderr)
        return 1
    result = explain(sets, policy, read.event)
    if args.json:
        print(json.dumps({"policy": policy_path, **result.as_dict()}, separators=(",", ":")))
        return 0
    print(f"event: {result.event_type}")
    print(f"policy: {policy_path}")
    print(f"outcome: {result.outcome.value}")
    print(f"inferred_rule: {rule_text(result.inferred_rule) or 'none'}")
    for section, entries in result.matches.items():
        found = "; ".join(rule_text((section, e)) or "" for e in entries)
        print(f"match {section.value}: {'yes ' + found if entries else 'no'}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _canonical_record(data: bytes) -> bytes:
    """A raw ring record (docs/records.md) -> its event as one JSON line."""
    from pybpfguard.agent.cgroups import CgroupCache
    from pybpfguard.agent.errors import AgentError
    from pybpfguard.agent.events.decode import RecordDecoder, RecordError
    from pybpfguard.agent.events.encode import LineEncoder

    try:
        event = RecordDecoder(CgroupCache()).decode(memoryview(data))
    except (RecordError, AgentError) as err:  # a bad record, or no cgroup2 mount to name its cgroup
        raise InputError(str(err)) from None
    return LineEncoder().lines([event])


def _canonical_json(data: bytes) -> bytes:
    """JSON events (one document, or JSON lines) -> each in the agent's encoding."""
    from pybpfguard.agent.events.encode import LineEncoder
    from pybpfguard.agent.events.model import BY_TAG, strict_class

    try:
        docs = [msgspec.json.decode(data)]
    except msgspec.DecodeError:
        docs = []
        for number, line in enumerate(data.splitlines(), 1):
            if line.strip():
                try:
                    docs.append(msgspec.json.decode(line))
                except msgspec.DecodeError as err:
                    raise InputError(f"line {number}: not JSON: {err}") from None
    events = []
    for number, doc in enumerate(docs, 1):
        tag = doc.get("type") if isinstance(doc, dict) else None
        if not isinstance(tag, str) or tag not in BY_TAG:
            raise InputError(f"event {number}: not an event object with a known 'type'")
        try:
            events.append(msgspec.convert(doc, type=strict_class(BY_TAG[tag])))
        except msgspec.ValidationError as err:
            raise InputError(f"event {number}: not a valid {tag} event: {err}") from None
    return LineEncoder().lines(events)


def event_canonical(args: argparse.Namespace) -> int:
    """``policy event-canonical <file|->``: the events of *file* in the agent's own encoding."""
    try:
        data = read_bytes(args.file, "event")
        try:
            if not data.strip():
                raise InputError("empty input")
            out = _canonical_json(data) if data.lstrip()[:1] in (b"{", b"[") else _canonical_record(data)
        except InputError as err:
            raise InputError(f"{args.file}: {err}") from None
    except InputError as err:
        print(f"{args.prog} policy event-canonical: {err}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out)
    return 0
