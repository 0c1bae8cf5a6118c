"""Fixtures for ring buffer tests: a fresh kernel ring, a reader over it, and a producer writing into it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pybpfguard.bpf import _sys
from pybpfguard.bpf.ringbuf import RingReader

from .producers import create_ring


@pytest.fixture
def ring_fd(kernel: None, request: pytest.FixtureRequest) -> Iterator[_sys.Fd]:
    """A 64 KiB ``BPF_MAP_TYPE_RINGBUF`` (size overridable with ``@pytest.mark.ring_size(n)``)."""
    marker = request.node.get_closest_marker("ring_size")
    with create_ring(marker.args[0] if marker else 1 << 16) as fd:
        yield fd


@pytest.fixture
def reader(ring_fd: _sys.Fd) -> Iterator[RingReader]:
    with RingReader(ring_fd) as r:
        yield r


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ring_size(n): size in bytes of the ring_fd fixture's ring buffer")
