"""PinnedMaps: the two rule sets and one typed attribute per other pin, the same set as ``pinned_specs``."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from pybpfguard.agent.maps import RULE_SET_MAPS, RULE_SETS, PinnedMaps, RuleSet, pinned_specs, set_map_name


def test_every_pinned_spec_has_its_typed_attribute():
    per_set = {set_map_name(name, i) for i in range(RULE_SETS) for name in RULE_SET_MAPS}
    others = [f.name for f in fields(PinnedMaps) if f.name not in ("root", "sets", "live")]
    assert per_set | set(others) == set(pinned_specs()) and not per_set & set(others)
    assert [f.name for f in fields(RuleSet) if f.name != "index"] == list(RULE_SET_MAPS)


@pytest.mark.kernel
def test_the_loader_view_names_the_same_maps_as_the_attributes(bpffs: Path):
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:
        assert pins.live_index() == 0
        assert pins.maps["deny_inode"] is pins.deny_inode is pins.sets[0].deny_inode
        assert pins.maps["deny_inode_1"] is pins.sets[1].deny_inode
        assert set(pins.maps) == set(pinned_specs())


@pytest.mark.kernel
def test_switching_sets_changes_what_every_rule_attribute_names(bpffs: Path):
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:
        pins.switch_to(1)
        assert all(getattr(pins, name) is getattr(pins.sets[1], name) for name in RULE_SET_MAPS)
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:  # another process sees the switch
        assert pins.live_index() == 1 and pins.deny_inode is pins.sets[1].deny_inode
        pins.switch_to(0)


@pytest.mark.kernel
def test_pins_made_before_rule_sets_are_kept_as_set_zero(bpffs: Path):
    from pybpfguard.agent.maps import INODE_KEY

    root = bpffs / "pybpfguard"
    with PinnedMaps.open(root) as pins:
        pins.deny_inode.update_elem(INODE_KEY.value(ino=7, dev=9), 1)
    for name in (*(set_map_name(n, 1) for n in RULE_SET_MAPS), "rule_set", "deny_cgroup_inode", "allow_exec_inode"):
        (root / name).unlink()  # as an agent of the previous release left them
    with PinnedMaps.open(root) as pins:
        assert pins.live_index() == 0 and [(k.ino, k.dev) for k in pins.deny_inode] == [(7, 9)]
