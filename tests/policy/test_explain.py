"""``explain``: which sections match an event, the rule that decides it, the notes; the model
(pybpfguard.agent.policy.replay.explain) and the command line against a file or the applied snapshot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pybpfguard.agent.events.model import Action
from pybpfguard.agent.paths import inode_key
from pybpfguard.agent.policy.model import Section
from pybpfguard.agent.policy.replay import ALL_SECTIONS, Outcome, explain, read_event
from tests.policy import replay_events
from tests.policy.replay_events import block_event, cli, lines, net_event
from tests.policy.test_simulate_model import DEV, POLICY, sets_for

env, world = replay_events.env, replay_events.world  # the shared fixtures


def _explain(ev):  # type: ignore[no-untyped-def]
    read = read_event(lines(ev))
    assert read.event is not None, read.reason
    return explain(sets_for(POLICY), POLICY, read.event)


def test_a_denied_inode_names_its_deny_path_entry() -> None:
    x = _explain(block_event(100, DEV, path=b"/etc/shadow"))
    d = x.as_dict()
    assert (d["outcome"], d["inferred_rule"]) == ("would_block_inode", "[deny_path] /etc/shadow (line 3)")
    assert [k for k, v in d["matches"].items() if v] == ["deny_path"]
    assert list(d["matches"]) == [s.value for s in ALL_SECTIONS]
    assert d["matched_entries"] == [{"section": "deny_path", "line": 3, "text": "/etc/shadow"}]
    assert any("survival allowlist" in n for n in d["notes"])
    assert any("/gone/file" in n and "matches by path only" in n for n in d["notes"])  # unresolved entry


def test_allow_cgroup_exempts_and_both_match() -> None:
    x = _explain(block_event(555, DEV, cgid=9001, action=Action.AUDIT))
    assert x.outcome is Outcome.WOULD_ALLOW
    assert [e.text for e in x.matches[Section.ALLOW_CGROUP]] == ["/sys/fs/cgroup/ok.slice"]
    assert [e.text for e in x.matches[Section.DENY_INODE]] == [f"{DEV}:555"]
    assert any("audit mode" in n for n in x.notes) and any("allow_cgroup" in n for n in x.notes)


def test_a_replaced_file_matches_by_path_and_says_so() -> None:
    x = _explain(block_event(999, DEV, path=b"/etc/passwd"))
    assert x.outcome is Outcome.WOULD_BLOCK_PATH
    assert x.matches[Section.DENY_PATH] and not x.matches[Section.DENY_INODE]
    assert any("replaced" in n for n in x.notes)


def test_protect_path_and_cgroup_inode_and_comm() -> None:
    x = _explain(block_event(102, DEV, path=b"/srv/protected"))
    assert x.inferred_rule is not None and x.inferred_rule[0] is Section.PROTECT_PATH
    assert any("VERIFIED_EXEC" in n for n in x.notes)
    x = _explain(block_event(600, DEV, cgid=77))
    assert x.outcome is Outcome.WOULD_BLOCK_INODE and x.matches[Section.CGROUP_DENY_INODE]
    assert x.matches[Section.ALLOW_CGROUP]  # matched, yet no exemption for a cgroup-scoped rule
    x = _explain(block_event(0, 0, path=b"/usr/local/bin/xmrig", action=Action.BLOCK))
    assert x.outcome is Outcome.WOULD_BLOCK_COMM and x.matches[Section.DENY_COMM]


def test_no_match_says_the_event_would_not_occur() -> None:
    x = _explain(block_event(1, 1, path=b"/nowhere"))
    assert x.outcome is Outcome.NO_MATCH and x.inferred_rule is None
    assert not any(x.matches.values())
    assert any("no rule" in n for n in x.notes)


# --- command line -------------------------------------------------------------------------------------------


def test_explain_against_a_file_text_and_json(world, env) -> None:  # type: ignore[no-untyped-def]
    ev = lines(block_event(*inode_key(os.stat(world["denied"])), path=os.fsencode(world["denied"])))
    out = cli("explain", "-", "--policy", str(world["policy"]), env=env, stdin=ev)
    assert out.returncode == 0, out.stderr
    assert f"inferred_rule: [deny_path] {world['denied']} (line 3)" in out.stdout.splitlines()
    assert "outcome: would_block_inode" in out.stdout and "match deny_path: yes" in out.stdout
    src = world["tmp"] / "ev.json"
    src.write_text(json.dumps(json.loads(ev), indent=2))  # a pretty-printed event is read whole
    doc = json.loads(cli("explain", str(src), "--policy", str(world["policy"]), "--json", env=env).stdout)
    assert doc["policy"] == str(world["policy"]) and doc["matches"]["deny_path"] is True
    net = lines(net_event("connect", "10.1.1.1", 443, rule_type="port"))
    doc = json.loads(cli("explain", "-", "--policy", str(world["policy"]), "--json", env=env, stdin=net).stdout)
    assert doc["inferred_rule"] == "[deny_cidr] 10.0.0.0/8 (line 8)"
    assert doc["matches"]["deny_cidr"] and doc["matches"]["deny_port"] and not doc["matches"]["deny_path"]


def test_explain_reads_the_applied_snapshot_by_default(world, env) -> None:  # type: ignore[no-untyped-def]
    ev = lines(block_event(*inode_key(os.stat(world["denied"])), path=os.fsencode(world["denied"])))
    out = cli("explain", "-", env=env, stdin=ev)
    assert out.returncode == 1 and "no applied policy" in out.stderr and "--policy" in out.stderr
    state = Path(env["PYBPFGUARD_STATE_DIR"])
    state.mkdir()
    (state / "policy.applied").write_text(world["policy"].read_text())
    out = cli("explain", "-", env=env, stdin=ev)
    assert out.returncode == 0 and f"policy: {state / 'policy.applied'}" in out.stdout
    assert "outcome: would_block_inode" in out.stdout


@pytest.mark.parametrize("content, says", [
    (b"", "not JSON"), (b"{oops", "not JSON"), (b'{"type":"exec","pid":1}', "not a block or net_*_block"),
    (b'{"type":"block","pid":1}', "invalid"), (b"[]", "invalid"),
])
def test_bad_events_are_exit_1_naming_the_file(tmp_path, env, content, says) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "ev.json"
    src.write_bytes(content)
    out = cli("explain", str(src), "--policy", "/nonexistent.conf", env=env)
    assert out.returncode == 1 and str(src) in out.stderr and says in out.stderr and not out.stdout


def test_missing_files_are_exit_1(env) -> None:  # type: ignore[no-untyped-def]
    out = cli("explain", "/nonexistent/ev.json", env=env)
    assert out.returncode == 1 and "cannot read event /nonexistent/ev.json" in out.stderr
    out = cli("explain", "-", "--policy", "/nonexistent/p.conf", env=env, stdin=lines(block_event(1, 2)))
    assert out.returncode == 1 and "cannot read policy /nonexistent/p.conf" in out.stderr


def test_hash_sections_are_named_as_not_simulated() -> None:
    from pybpfguard.agent.policy.parse import parse_policy

    p = parse_policy(b"version=5\n[deny_path]\n/etc/shadow\n[allow_binary_hash]\nsha256:" + b"ab" * 32 + b"\n",
                     "h.conf")
    read = read_event(lines(block_event(100, DEV, path=b"/etc/shadow")))
    x = explain(sets_for(p), p, read.event)  # type: ignore[arg-type]
    assert "line 4: [allow_binary_hash] is not simulated: an event only it would deny counts as no_match" in x.notes
