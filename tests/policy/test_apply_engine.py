"""The apply engine on a private bpffs: fill the idle set, switch in one write, switch back intact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pybpfguard.agent.maps import CGROUP_INODE_KEY, INODE_KEY, PinnedMaps
from pybpfguard.agent.policy.apply import ApplyError, CapacityError, apply_content, read_set, switch_back
from pybpfguard.agent.policy.resolve import RuleSetContent
from pybpfguard.agent.rulesync import GENERATION, Outcome
from pybpfguard.agent.statefiles import DenyDb, DenyDbEntry

pytestmark = pytest.mark.kernel


@pytest.fixture
def pins(bpffs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYBPFGUARD_STATE_DIR", str(tmp_path / "st"))
    with PinnedMaps.open(bpffs / "pybpfguard", max_deny_inodes=64) as opened:
        yield opened


@pytest.fixture
def db(tmp_path: Path) -> DenyDb:
    return DenyDb(tmp_path / "st" / "deny.db")


def _content(*keys: tuple[int, int], cgroups: tuple[int, ...] = (), comm: tuple[bytes, ...] = (),
             cg_rules: tuple[tuple[int, tuple[int, int]], ...] = ()) -> RuleSetContent:
    return RuleSetContent(deny_inode={k: 1 for k in keys}, allow_cgroup=set(cgroups), deny_comm=set(comm),
                          cgroup_deny_inode=set(cg_rules),
                          paths=[DenyDbEntry(dev, ino, b"/x/%d" % ino) for ino, dev in keys])


def test_reset_apply_makes_exactly_the_new_set_live_and_keeps_the_old_one_intact(pins, db):
    first = apply_content(pins, _content((1, 9), (2, 9), comm=(b"xmrig",)), reset=True, agent_cgids={77}, db=db)
    assert first.outcome is Outcome.STORED and first.live == 1 and pins.live_index() == 1
    second = apply_content(pins, _content((2, 9), (3, 9), cg_rules=((5, (4, 9)),)), reset=True, agent_cgids={77},
                           db=db)
    assert second.live == 0 and second.previous == 1
    live = read_set(pins.refresh_live(), db.read())
    assert set(live.deny_inode) == {(2, 9), (3, 9)} and live.allow_cgroup == {77} and not live.deny_comm
    assert live.cgroup_deny_inode == {(5, (4, 9))}
    assert pins.deny_cgroup_inode.get(CGROUP_INODE_KEY.value(cgid=5, ino=4, dev=9)) == 1
    old = read_set(pins.sets[1], [])
    assert set(old.deny_inode) == {(1, 9), (2, 9)} and old.deny_comm == {b"xmrig"}  # intact, for a switch back
    assert {e.key for e in db.read()} == {(2, 9), (3, 9)}
    switch_back(pins, second.previous, db, second.previous_paths)
    assert set(read_set(pins.refresh_live(), []).deny_inode) == {(1, 9), (2, 9)}
    assert {e.key for e in db.read()} == {(1, 9), (2, 9)}


def test_apply_without_reset_adds_to_the_live_rules(pins, db):
    apply_content(pins, _content((1, 9), cgroups=(5,)), reset=True, agent_cgids=set(), db=db)
    apply_content(pins, _content((2, 9)), reset=False, agent_cgids=set(), db=db)
    live = read_set(pins.refresh_live(), db.read())
    assert set(live.deny_inode) == {(1, 9), (2, 9)} and live.allow_cgroup == {5}
    assert {e.key for e in db.read()} == {(1, 9), (2, 9)}


def test_a_set_too_large_for_its_map_changes_nothing(pins, db):
    apply_content(pins, _content((1, 9)), reset=True, agent_cgids=set(), db=db)
    generation = pins.rule_sync.lookup_elem(GENERATION)
    with pytest.raises(CapacityError, match="deny_inode: the new rule set needs 65 entries, the map holds 64"):
        apply_content(pins, _content(*((i, 9) for i in range(100, 165))), reset=True, agent_cgids=set(), db=db)
    assert pins.live_index() == 1 and pins.rule_sync.lookup_elem(GENERATION) == generation
    assert set(read_set(pins.refresh_live(), []).deny_inode) == {(1, 9)}


def test_a_failure_after_the_switch_switches_back(pins, db):
    apply_content(pins, _content((1, 9)), reset=True, agent_cgids=set(), db=db)

    def boom() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(ApplyError, match="switched back to the previous rules"):
        apply_content(pins, _content((2, 9)), reset=True, agent_cgids=set(), db=db, after_switch=boom)
    assert pins.live_index() == 1 and set(read_set(pins.live, []).deny_inode) == {(1, 9)}
    assert {e.key for e in db.read()} == {(1, 9)}


def test_the_file_policy_empty_hint_follows_the_live_set(pins, db):
    apply_content(pins, _content((1, 9)), reset=True, agent_cgids=set(), db=db)
    assert pins.agent_config.lookup_elem(0).file_policy_empty == 0
    apply_content(pins, _content(), reset=True, agent_cgids=set(), db=db)
    assert pins.agent_config.lookup_elem(0).file_policy_empty == 1
    apply_content(pins, _content(cg_rules=((5, (4, 9)),)), reset=True, agent_cgids=set(), db=db)
    assert pins.agent_config.lookup_elem(0).file_policy_empty == 0  # cgroup-scoped rules count too


def test_block_add_after_an_apply_edits_the_live_set(pins, db, tmp_path):
    from pybpfguard.agent.rules import block_add

    apply_content(pins, _content((1, 9)), reset=True, agent_cgids=set(), db=db)
    target = tmp_path / "f"
    target.write_text("x")
    block_add(pins, db, str(target))
    st = os.stat(target)
    from pybpfguard.agent.paths import kernel_dev

    assert pins.sets[1].deny_inode.get(INODE_KEY.value(ino=st.st_ino, dev=kernel_dev(st.st_dev))) == 1
    assert pins.sets[0].deny_inode.get(INODE_KEY.value(ino=st.st_ino, dev=kernel_dev(st.st_dev))) is None


def test_binary_hashes_resolve_to_the_inodes_that_have_them(tmp_path):
    import hashlib

    from pybpfguard.agent.paths import inode_key
    from pybpfguard.agent.policy.parse import parse_policy
    from pybpfguard.agent.policy.resolve import resolve_policy

    bins = tmp_path / "bins"
    bins.mkdir()
    (bins / "bad").write_bytes(b"miner")
    (bins / "good").write_bytes(b"tool")
    digest = {name: hashlib.sha256((bins / name).read_bytes()).hexdigest() for name in ("bad", "good")}
    text = (f"version=3\n[deny_binary_hash]\nsha256:{digest['bad']}\n[allow_binary_hash]\nsha256:{digest['good']}\n"
            f"[scan_paths]\n{bins}\n").encode()
    from pybpfguard.agent.policy.hashscan import scan_tree

    content = resolve_policy(parse_policy(text, "p.conf"), "p.conf",
                             scanner=lambda digests, roots: scan_tree(roots, digests, progress=False))
    bad, good = inode_key((bins / "bad").stat()), inode_key((bins / "good").stat())
    assert content.deny_inode == {bad: 1} and [e.path for e in content.paths] == [bytes(bins / "bad")]
    assert content.allowlist and content.allow_exec == {good}


def test_a_missing_scan_path_is_an_error_naming_its_line(tmp_path):
    from pybpfguard.agent.policy.hashscan import scan_tree
    from pybpfguard.agent.policy.model import PolicyError
    from pybpfguard.agent.policy.parse import parse_policy
    from pybpfguard.agent.policy.resolve import resolve_policy

    text = f"version=3\n[deny_binary_hash]\nsha256:{'ab' * 32}\n[scan_paths]\n{tmp_path}/nope\n".encode()
    with pytest.raises(PolicyError, match=r"line 5: .*nope: not a directory"):
        resolve_policy(parse_policy(text, "p.conf"), "p.conf",
                       scanner=lambda digests, roots: scan_tree(roots, digests, progress=False))


def test_an_allowlist_hash_that_matches_no_file_is_said_like_a_deny_hash(tmp_path):
    """An [allow_binary_hash] entry found nowhere allows nothing; with none found at all, allowlist mode
    denies every exec outside the exempt cgroups and the survival list: both must be said, not silent."""
    import hashlib

    from pybpfguard.agent.policy.hashscan import scan_tree
    from pybpfguard.agent.policy.parse import parse_policy
    from pybpfguard.agent.policy.resolve import resolve_policy

    bins = tmp_path / "bins"
    bins.mkdir()
    (bins / "good").write_bytes(b"tool")
    good, absent = hashlib.sha256(b"tool").hexdigest(), "cd" * 32

    def resolve(*digests: str):
        text = ("version=3\n[allow_binary_hash]\n" + "".join(f"sha256:{d}\n" for d in digests)
                + f"[scan_paths]\n{bins}\n").encode()
        return resolve_policy(parse_policy(text, "p.conf"), "p.conf",
                              scanner=lambda ds, roots: scan_tree(roots, ds, progress=False))

    some = resolve(good, absent)
    assert some.allowlist and len(some.allow_exec) == 1
    assert [n for n in some.notes if absent in n and "allow_binary_hash" in n]
    assert not [n for n in some.notes if "every exec" in n]
    none = resolve(absent)
    assert none.allowlist and not none.allow_exec
    assert [n for n in none.notes if "no file matches any [allow_binary_hash]" in n and "every exec" in n]


def test_an_allowlisted_file_another_user_can_write_is_said(tmp_path):
    """Allowlist mode allows an inode: a user who can write the file can replace its content after the scan
    and run anything under the allowed inode. apply must say so for each such file."""
    import hashlib

    from pybpfguard.agent.policy.hashscan import scan_tree
    from pybpfguard.agent.policy.parse import parse_policy
    from pybpfguard.agent.policy.resolve import resolve_policy

    bins = tmp_path / "bins"
    bins.mkdir()
    for name in ("root-owned", "nobodys", "group-writable"):
        (bins / name).write_bytes(b"tool")
        (bins / name).chmod(0o755)
    os.chown(bins / "nobodys", 65534, 65534)
    (bins / "group-writable").chmod(0o775)
    text = (f"version=3\n[allow_binary_hash]\nsha256:{hashlib.sha256(b'tool').hexdigest()}\n"
            f"[scan_paths]\n{bins}\n").encode()
    content = resolve_policy(parse_policy(text, "p.conf"), "p.conf",
                             scanner=lambda ds, roots: scan_tree(roots, ds, progress=False))
    assert len(content.allow_exec) == 3
    notes = [n for n in content.notes if "rewritten" in n]
    assert len(notes) == 1 and "2 allowed files can be rewritten" in notes[0], content.notes
    assert str(bins / "group-writable") in notes[0] or str(bins / "nobodys") in notes[0]
