"""PinnedMaps: one typed attribute per pinned map, the same set and order as ``pinned_specs``."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from pybpfguard.agent.maps import PinnedMaps, pinned_specs


def test_every_pinned_spec_has_its_typed_attribute():
    assert [f.name for f in fields(PinnedMaps) if f.name != "root"] == list(pinned_specs())


@pytest.mark.kernel
def test_the_loader_view_names_the_same_maps_as_the_attributes(bpffs: Path):
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:
        assert pins.maps["deny_inode"] is pins.deny_inode
        assert set(pins.maps) == set(pinned_specs())
