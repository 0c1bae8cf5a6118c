"""Rule sets from a policy (pybpfguard.agent.policy.ruleset) and block events replayed against them
(pybpfguard.agent.policy.replay): the file decision is decide_file's, for every case of its table."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpfguard.agent import decision
from pybpfguard.agent.decision import AllowReason, FileRequest, Mode, Verdict, decide_file
from pybpfguard.agent.events.model import Action
from pybpfguard.agent.maps import DENY_ALWAYS, PROTECT_VERIFIED_EXEC
from pybpfguard.agent.netdecision import NetRules
from pybpfguard.agent.paths import PathRuleError, ResolvedPath
from pybpfguard.agent.policy import replay as replay_mod
from pybpfguard.agent.policy.model import PolicyError, Section
from pybpfguard.agent.policy.parse import parse_policy
from pybpfguard.agent.policy.replay import Outcome, explain, read_event, read_events, replay
from pybpfguard.agent.policy.ruleset import (
    FileRuleSet,
    NetRuleSet,
    RuleSets,
    file_rules_from_policy,
    net_rules_from_policy,
    rule_sets_from_policy,
)
from pybpfguard.agent.rules import RuleError
from tests.decision_table import CASES, Case
from tests.policy.replay_events import block_event, lines, net_event, policy

DEV = 271581186
FILES = {b"/etc/shadow": (b"/etc/shadow", 100), b"/etc/passwd-link": (b"/etc/passwd", 101),
         b"/srv/protected": (b"/srv/protected", 102)}
CGROUPS = {b"/sys/fs/cgroup/ok.slice": 9001}


def fake_resolve(raw: bytes) -> ResolvedPath:
    if raw not in FILES:
        raise PathRuleError(raw, "cannot resolve: No such file or directory", 2)
    canonical, ino = FILES[raw]
    return ResolvedPath(raw, canonical, ino, DEV, 0o100644)


def fake_cgroup(path: bytes) -> int:
    if path not in CGROUPS:
        raise RuleError(f"{path.decode()}: No such file or directory")
    return CGROUPS[path]


def sets_for(p) -> RuleSets:  # type: ignore[no-untyped-def]
    return rule_sets_from_policy(p, fake_resolve, resolve_cgroup=fake_cgroup)


# The candidate policy: parsed from text like any policy file (line numbers are those of the text).
POLICY_TEXT = f"""version=6
[deny_path]
/etc/shadow
/etc/passwd-link
/gone/file
[protect_path]
/srv/protected
[deny_inode]
{DEV}:555
[allow_cgroup]
/sys/fs/cgroup/ok.slice
cgid:77
/sys/fs/cgroup/elsewhere
[deny_comm]
xmrig
[cgroup_deny_inode]
cgid:77 {DEV}:600
[deny_ip]
10.0.0.1
[deny_cidr]
10.0.0.0/8
[deny_port]
443:tcp:egress
[deny_ip_port]
10.0.0.1:8443:tcp
[cgroup_deny_ip]
cgid:5 192.0.2.1
/nope 192.0.2.2
[cgroup_deny_port]
cgid:5 22
"""
POLICY = parse_policy(POLICY_TEXT.encode(), "cand.conf")
SETS = rule_sets_from_policy(POLICY, fake_resolve, resolve_cgroup=fake_cgroup)


# --- rule sets --------------------------------------------------------------------------------------------


def test_file_rules_resolve_paths_to_inodes_and_keep_the_paths() -> None:
    fs = file_rules_from_policy(POLICY, fake_resolve, resolve_cgroup=fake_cgroup)
    assert dict(fs.rules.deny) == {(100, DEV): DENY_ALWAYS, (101, DEV): DENY_ALWAYS, (102, DEV): PROTECT_VERIFIED_EXEC,
                                   (555, DEV): DENY_ALWAYS}
    # as written and canonical; an unresolved path is still matched by path
    assert dict(fs.paths) == {b"/etc/shadow": 1, b"/etc/passwd-link": 1, b"/etc/passwd": 1, b"/gone/file": 1,
                              b"/srv/protected": 2}
    assert fs.rules.allow_cgroups == {9001, 77}
    assert fs.cgroup_paths == {b"/sys/fs/cgroup/elsewhere"}
    assert fs.comms == {b"xmrig"}
    assert fs.rules.cgroup_deny == {(77, (600, DEV))}
    assert not fs.rules.survival
    assert [(u.section, u.entry.line) for u in fs.unresolved] == [(Section.DENY_PATH, 5),
                                                                  (Section.ALLOW_CGROUP, 13)]
    assert fs.origins[(Section.DENY_PATH, (101, DEV))].text == "/etc/passwd-link"
    assert fs.origins[(Section.DENY_INODE, (555, DEV))].line == 9


def test_net_rules_from_the_policy_sections() -> None:
    ns = net_rules_from_policy(POLICY, resolve_cgroup=fake_cgroup)
    ip = ipaddress.ip_address
    assert ns.rules == NetRules(
        ips=frozenset({ip("10.0.0.1")}), cidrs=frozenset({ipaddress.ip_network("10.0.0.0/8")}),
        ports=frozenset({(443, 6, 0)}), ip_ports=frozenset({(ip("10.0.0.1"), 8443, 6)}),
        cgroup_ips=frozenset({(5, ip("192.0.2.1"))}), cgroup_ports=frozenset({(5, 22, 0, 2)}),
        allow_cgroups=frozenset({9001, 77}))
    assert [(u.section, u.entry.text) for u in ns.unresolved] == [
        (Section.CGROUP_DENY_IP, "/nope 192.0.2.2"), (Section.ALLOW_CGROUP, "/sys/fs/cgroup/elsewhere")]
    assert not net_rules_from_policy(policy(), resolve_cgroup=fake_cgroup).rules.protect_connect
    flagged = policy(flags=(Section.PROTECT_CONNECT,))
    assert net_rules_from_policy(flagged, resolve_cgroup=fake_cgroup).rules.protect_connect


def test_strict_mode_names_the_file_and_line_of_the_first_unresolved_entry() -> None:
    with pytest.raises(PolicyError) as err:
        file_rules_from_policy(POLICY, fake_resolve, resolve_cgroup=fake_cgroup, strict=True, source="cand.conf")
    assert (err.value.source, err.value.line) == ("cand.conf", 5)
    assert "/gone/file" in str(err.value) and str(err.value).startswith("cand.conf: line 5: ")


def test_the_default_resolver_stats_the_canonical_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.policy.replay_events import stat_key

    target = tmp_path / "real"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)
    link = bytes(tmp_path / "link")
    fs = file_rules_from_policy(policy(deny_path=[(link.decode(), link)]), resolve_cgroup=fake_cgroup)
    assert dict(fs.rules.deny) == {stat_key(target): DENY_ALWAYS}
    assert set(fs.paths) == {link, bytes(target)}


# --- reading events ---------------------------------------------------------------------------------------


def test_bad_lines_are_skipped_not_raised() -> None:
    good = lines(block_event(1, 2)).rstrip(b"\n")
    data = [b"{not json", b"[1,2]", b"42", b'{"type":7}', b'{"type":"block","pid":1}', b'{"type":"exec"}',
            good + b" trailing", b"", b"   ", good.replace(b'"ino":1', b'"ino":-1'), good.replace(b'"cgid"', b'"cg"'),
            lines(net_event("connect", "10.0.0.1", 443)).replace(b"10.0.0.1", b"example.com").rstrip(),
            lines(net_event("connect", "10.0.0.1", 443)).replace(b'"tcp"', b'"sctp"').rstrip(),
            b"\xff\xfe", good]
    got = [(r.line, r.skipped) for r in read_events(data)]
    inv, non = Outcome.SKIPPED_INVALID, Outcome.SKIPPED_NON_BLOCK
    assert got == [(1, inv), (2, inv), (3, inv), (4, inv), (5, inv), (6, non), (7, inv), (10, inv), (11, inv),
                   (12, inv), (13, inv), (14, inv), (15, None)]


def test_every_event_type_of_the_agent_reads_back() -> None:
    from tests.events.conftest import make_sample_events

    for ev in make_sample_events():
        r = read_event(lines(ev))
        tag = ev.__struct_config__.tag
        if tag == "block" or tag.startswith("net_"):
            assert r.event is not None and lines(r.event) == lines(ev), tag
        else:
            assert r.skipped is Outcome.SKIPPED_NON_BLOCK, tag


# --- block events against the policy ----------------------------------------------------------------------


def _one(sets: RuleSets, ev) -> replay_mod.Replayed:  # type: ignore[no-untyped-def]
    return next(replay(sets, POLICY, read_events([lines(ev)])))


@pytest.mark.parametrize("ev, outcome, rule", [
    (block_event(100, DEV, path=b"/etc/shadow"), Outcome.WOULD_BLOCK_INODE, "[deny_path] /etc/shadow (line 3)"),
    (block_event(555, DEV, path=b"/x"), Outcome.WOULD_BLOCK_INODE, f"[deny_inode] {DEV}:555 (line 9)"),
    (block_event(101, DEV, path=b"/etc/passwd"), Outcome.WOULD_BLOCK_INODE, "[deny_path] /etc/passwd-link (line 4)"),
    # the inode changed since the event (file replaced): the path still names a rule
    (block_event(999, DEV, path=b"/etc/passwd"), Outcome.WOULD_BLOCK_PATH, "[deny_path] /etc/passwd-link (line 4)"),
    (block_event(999, DEV, path=b"/gone/file"), Outcome.WOULD_BLOCK_PATH, "[deny_path] /gone/file (line 5)"),
    (block_event(102, DEV, path=b"/srv/protected"), Outcome.WOULD_BLOCK_INODE,
     "[protect_path] /srv/protected (line 7)"),
    (block_event(100, DEV, cgid=9001), Outcome.WOULD_ALLOW, "[deny_path] /etc/shadow (line 3)"),
    (block_event(999, DEV, cgid=77, path=b"/etc/shadow"), Outcome.WOULD_ALLOW, "[deny_path] /etc/shadow (line 3)"),
    # an allow_cgroup directory that does not exist here still names the event's cgroup by path
    (block_event(100, DEV, cgid=31337, cgroup_path="/sys/fs/cgroup/elsewhere"), Outcome.WOULD_ALLOW,
     "[deny_path] /etc/shadow (line 3)"),
    (block_event(100, DEV + 1, path=b"/other"), Outcome.NO_MATCH, None),
    (block_event(600, DEV, cgid=77), Outcome.WOULD_BLOCK_INODE, f"[cgroup_deny_inode] cgid:77 {DEV}:600 (line 17)"),
    (block_event(600, DEV, cgid=78), Outcome.NO_MATCH, None),
    (block_event(0, 0, path=b"/opt/miner/xmrig", action=Action.BLOCK), Outcome.WOULD_BLOCK_COMM,
     "[deny_comm] xmrig (line 15)"),
    (block_event(0, 0, path=b"/opt/miner/xmrig", cgid=77, action=Action.BLOCK), Outcome.WOULD_ALLOW,
     "[deny_comm] xmrig (line 15)"),
    (block_event(0, 0, path=b"/usr/bin/true", action=Action.BLOCK), Outcome.NO_MATCH, None),
], ids=lambda v: v if isinstance(v, (str, Outcome)) else "")
def test_block_events(ev, outcome, rule) -> None:  # type: ignore[no-untyped-def]
    r = _one(sets_for(POLICY), ev)
    assert (r.outcome, replay_mod.rule_text(r.rule)) == (outcome, rule)


def test_the_replay_calls_the_enforcement_models_themselves() -> None:
    from pybpfguard.agent import execdecision

    assert replay_mod.decide_file is decision.decide_file
    assert replay_mod.decide_exec is execdecision.decide_exec


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_simulate_decides_every_case_of_the_file_table_as_decide_file(case: Case) -> None:
    key, cgid = (1234, DEV), 4242
    rules = case.rules(key, cgid)
    sets = RuleSets(FileRuleSet(rules), NetRuleSet(NetRules()))
    r = next(replay(sets, policy(), read_events([lines(block_event(*key, cgid=cgid))])))
    # events do not say whether the process was VERIFIED_EXEC; simulate asks what enforce would do
    expected = decide_file(rules, FileRequest(key, cgid), Mode.ENFORCE)
    assert r.decision is expected
    if expected.verdict is Verdict.DENY:
        assert r.outcome is Outcome.WOULD_BLOCK_INODE
    elif expected.reason is AllowReason.NO_RULE:
        assert r.outcome is Outcome.NO_MATCH
    else:
        assert r.outcome is Outcome.WOULD_ALLOW and r.reason == expected.reason.value


def test_counts_sum_and_cover_every_outcome() -> None:
    evs = [block_event(100, DEV), block_event(999, DEV, path=b"/gone/file"), block_event(100, DEV, cgid=77),
           block_event(7, 7), block_event(0, 0, path=b"/x/xmrig"), net_event("connect", "10.0.0.1", 443)]
    data = [*lines(*evs).splitlines(), b"nope", b'{"type":"exec"}']
    counts = replay_mod.Counts()
    for r in replay(sets_for(POLICY), POLICY, read_events(data)):
        counts.add(r.outcome)
    assert counts.as_dict() == {"would_block": 4, "would_block_inode": 1, "would_block_path": 1,
                                "would_block_comm": 1, "would_block_net": 1, "would_allow": 1, "no_match": 1,
                                "skipped_non_block": 1, "skipped_invalid": 1}


_VALID = [json.loads(lines(e)) for e in (block_event(100, DEV, path=b"/etc/shadow"), block_event(0, 0, path=b"/x"),
                                          net_event("connect", "10.0.0.1", 443), net_event("bind", local_port=80),
                                          net_event("accept", "::ffff:10.0.0.1", 5, local_port=22))]
_JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from(_VALID), changes=st.dictionaries(st.sampled_from(
    ["path", "path_b64", "ino", "dev", "cgid", "cgroup_path", "cgroup_path_b64", "remote_ip", "remote_port",
     "local_port", "protocol", "family", "action", "rule_type", "type", "extra"]), _JSON_VALUES, max_size=4),
    junk=st.binary(max_size=64))
def test_any_line_is_an_outcome_never_an_exception(base, changes, junk) -> None:  # type: ignore[no-untyped-def]
    line = json.dumps({**base, **changes}).encode()
    outcomes = [r.outcome for r in replay(SETS, POLICY, read_events([line, junk, line[: len(line) // 2]]))]
    assert all(isinstance(o, Outcome) for o in outcomes)
    for r in read_events([line]):
        if r.event is not None:
            explain(SETS, POLICY, r.event)


def test_a_kernel_ring_record_replays_like_a_fanotify_decision() -> None:
    from pybpfguard.agent.events.decode import RecordDecoder
    from pybpfguard.agent.events.records import BLOCK, ActionCode
    from tests.policy.replay_events import FixedCgroups

    rec = BLOCK.pack(pid=4242, ppid=1, start_time=5_000_000_123, parent_start_time=10, cgid=4242, comm=b"cat",
                     ino=100, dev=DEV, action=ActionCode.TERM, path=b"/etc/shadow")
    from_ring = RecordDecoder(FixedCgroups()).decode(memoryview(rec))  # type: ignore[arg-type]
    from_guard = block_event(100, DEV, path=b"/etc/shadow")
    got = [(r.outcome, r.rule) for r in replay(SETS, POLICY, read_events([lines(from_ring), lines(from_guard)]))]
    assert got[0] == got[1] and got[0][0] is Outcome.WOULD_BLOCK_INODE


# --- deny_binary_hash: the event's file, where apply's scan would find it ---------------------------------

DIGEST = bytes(range(32))
HASH_POLICY = parse_policy(f"version=3\n[deny_binary_hash]\nsha256:{DIGEST.hex()}\n[allow_cgroup]\ncgid:77\n"
                           "[scan_paths]\n/opt/tools\n".encode(), "hash.conf")


def test_a_binary_hash_denies_the_events_inode_through_the_file_model() -> None:
    sets = sets_for(HASH_POLICY)
    assert sets.file.deny_hashes == {DIGEST} and sets.file.scan_roots[-1] == b"/opt/tools"
    asked = []

    def hash_of(path: bytes, key: tuple[int, int], dirs: tuple[bytes, ...]) -> bytes | None:
        asked.append((path, key))
        return DIGEST if path.startswith(b"/opt/tools/") else b"\0" * 32

    evs = [block_event(7, DEV, path=b"/opt/tools/miner"), block_event(7, DEV, path=b"/opt/tools/miner", cgid=77),
           block_event(8, DEV, path=b"/srv/other")]
    got = [(r.outcome, replay_mod.rule_text(r.rule))
           for r in replay(sets, HASH_POLICY, read_events(lines(*evs).splitlines()), hash_of)]
    rule = f"[deny_binary_hash] sha256:{DIGEST.hex()} (line 3)"
    assert got == [(Outcome.WOULD_BLOCK_INODE, rule), (Outcome.WOULD_ALLOW, rule), (Outcome.NO_MATCH, None)]
    assert asked == [(b"/opt/tools/miner", (7, DEV)), (b"/srv/other", (8, DEV))]  # once per inode
    x = explain(sets, HASH_POLICY, read_event(lines(evs[0])).event, hash_of)  # type: ignore[arg-type]
    assert x.matches[Section.DENY_BINARY_HASH] and x.as_dict()["inferred_rule"] == rule


def test_host_hash_is_the_scans_view_of_one_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from pybpfguard.agent.policy.hashscan import scan_roots
    from pybpfguard.agent.policy.replay import host_hash
    from tests.policy.replay_events import stat_key

    root, other = tmp_path / "root", tmp_path / "other"
    (root / "sub").mkdir(parents=True)
    other.mkdir()
    tool = root / "sub" / "tool"
    tool.write_bytes(b"\x7fELF pretend")
    outside = other / "tool"
    outside.write_bytes(b"\x7fELF pretend")
    (root / "link").symlink_to(outside)
    dirs = scan_roots([bytes(root)])[0]
    digest = hashlib.sha256(b"\x7fELF pretend").digest()
    assert host_hash(bytes(tool), stat_key(tool), dirs) == digest
    assert host_hash(bytes(outside), stat_key(outside), dirs) is None  # not under a scanned directory
    assert host_hash(bytes(root / "link"), stat_key(outside), dirs) is None  # the scan follows no symlink
    assert host_hash(bytes(tool), (stat_key(tool)[0] + 1, stat_key(tool)[1]), dirs) is None  # another inode now
    assert host_hash(bytes(root / "gone"), (1, 1), dirs) is None
