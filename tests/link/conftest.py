"""Fixtures for link tests: tracefs (mounted privately when the host has not), a counter map, and a
check that every link a test made is gone when it ends."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from pybpfguard.bpf.errors import KeyNotFoundError, NotSupportedError
from pybpfguard.bpf.link import Link
from pybpfguard.bpf.maps import Map, MapSpec, MapType
from pybpfguard.bpf.tracefs import tracefs_root


@pytest.fixture
def tracefs(kernel: None) -> Iterator[None]:
    """tracefs available for tracepoint ids; mounted in a temp dir (and unmounted after) when the host has
    no tracefs mount."""
    try:
        tracefs_root()
    except NotSupportedError:
        pass  # not mounted: mount our own below
    else:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="pybpfguard-tracefs-") as d:
        subprocess.run(["mount", "-t", "tracefs", "tracefs", d], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", d], check=False)


@pytest.fixture
def counter(kernel: None) -> Iterator[Map]:
    """A one-slot array map holding a u64 counter at key 0."""
    with Map.create(MapSpec(MapType.BPF_MAP_TYPE_ARRAY, 1, key_size=4, value_size=8, name="test_counter")) as m:
        yield m


class LinkTracker:
    """Remembers the ids of BPF links a test created; the fixture fails the test if any survives it."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def add(self, link: Link) -> Link:
        self.ids.append(link.info().id)
        return link


@pytest.fixture
def links(kernel: None) -> Iterator[LinkTracker]:
    tracker = LinkTracker()
    yield tracker
    survivors = []
    for link_id in tracker.ids:
        try:
            Link.from_id(link_id).close()
        except KeyNotFoundError:
            continue
        survivors.append(link_id)
    assert not survivors, f"links left attached after the test: {survivors}"
