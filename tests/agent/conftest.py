"""Fixtures for agent tests: the agent's maps in a private bpffs, the kernel layout from BTF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.sensors import private_specs
from pybpfguard.bpf.btf.layout import Layout as KernelLayout
from pybpfguard.bpf.btf.spec import load_vmlinux
from pybpfguard.bpf.maps import Map


@pytest.fixture(scope="session")
def kernel_layout() -> KernelLayout:
    return KernelLayout.from_btf(load_vmlinux())


@pytest.fixture
def agent_maps(bpffs: Path) -> Iterator[dict[str, Map]]:
    """Every agent map: the pinned set under the private bpffs plus procs and a 1 MiB events ring."""
    pins = PinnedMaps.open(bpffs / "pybpfguard")
    private = {name: Map.create(spec) for name, spec in private_specs(1 << 20).items()}
    try:
        yield {**pins.maps, **private}
    finally:
        for m in private.values():
            m.close()
        pins.close()
