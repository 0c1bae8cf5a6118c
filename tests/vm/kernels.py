"""Which stock kernels the VM tier boots: one per tier, each found by what it is (its release series).

A tier is a kernel series (``"6.1"``: Debian 12's kernel in /boot, installed by .ci/setup; ``"6.12"``:
Debian 13's kernel unpacked by .ci/vm-kernels). Within a tier the newest release found wins, compared
as version numbers (``6.1.0-57`` > ``6.1.0-9``). A kernel is usable when its image
``<root>/boot/vmlinuz-<release>`` and ``modules.dep`` under ``<root>/{usr/,}lib/modules/<release>`` exist.

``PYBPFGUARD_VM_ROOTS`` (``os.pathsep``-separated directories) replaces where every tier looks, e.g. to
try a kernel unpacked elsewhere; ``PYBPFGUARD_VM_CACHE`` is .ci/vm-kernels' cache directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_KERNEL_CACHE = Path("/var/cache/pybpfguard-vm")


class KernelNotFoundError(Exception):
    """No usable kernel of a tier; the message names the tier, where it looked and how to get one."""


@dataclass(frozen=True, slots=True)
class GuestKernel:
    """A bootable stock kernel: ``tier`` (its series, e.g. "6.12"), ``release`` (uname -r in the guest),
    ``vmlinuz`` (the bzImage) and ``modules_dir`` (the directory holding modules.dep and the .ko files)."""

    tier: str
    release: str
    vmlinuz: Path
    modules_dir: Path


def _cache_kernels_dir() -> Path:
    return Path(os.environ.get("PYBPFGUARD_VM_CACHE") or DEFAULT_KERNEL_CACHE) / "kernels"


def _cache_roots() -> list[Path]:
    cache = _cache_kernels_dir()
    return sorted(p for p in cache.glob("*") if p.is_dir()) if cache.is_dir() else [cache / "*"]


@dataclass(frozen=True, slots=True)
class KernelTier:
    """One kernel series the tier runs on: ``series`` ("major.minor"), ``roots`` (where to look),
    ``how_to_get`` (the hint in the error when none is found), ``optional`` (missing means skipped,
    not failed, unless PYBPFGUARD_REQUIRE_KERNEL=1: set for a kernel .ci/setup does not install)."""

    series: str
    roots: Callable[[], list[Path]]
    how_to_get: str
    optional: bool


TIERS: tuple[KernelTier, ...] = (
    KernelTier("6.1", lambda: [Path("/")], "apt-get install linux-image-amd64 (.ci/setup does)", optional=False),
    KernelTier("6.12", _cache_roots, "run .ci/vm-kernels (downloads Debian 13's kernel)", optional=True),
)
DEFAULT_TIER = TIERS[0]


def tier_named(series: str) -> KernelTier:
    """The tier whose series is *series*; KeyError naming the known ones otherwise."""
    for tier in TIERS:
        if tier.series == series:
            return tier
    raise KeyError(f"no VM kernel tier {series!r} (known: {', '.join(t.series for t in TIERS)})")


def version_key(release: str) -> list[int | str]:
    """Sort key comparing the numbers in *release* as numbers: "6.1.0-57-amd64" > "6.1.0-9-amd64"."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release)]


def series_of(release: str) -> str | None:
    """"major.minor" of a kernel release ("6.12.117+deb13-amd64" -> "6.12"), None if it has none."""
    match = re.match(r"(\d+)\.(\d+)(?!\d)", release)
    return f"{match[1]}.{match[2]}" if match else None


def _modules_dir(root: Path, release: str) -> Path | None:
    for sub in ("lib/modules", "usr/lib/modules"):
        candidate = root / sub / release
        if (candidate / "modules.dep").is_file():
            return candidate
    return None


def _roots(tier: KernelTier) -> list[Path]:
    override = os.environ.get("PYBPFGUARD_VM_ROOTS")
    if override is not None:
        return [Path(p) for p in override.split(os.pathsep) if p]
    return tier.roots()


def find_kernel(tier: KernelTier = DEFAULT_TIER) -> GuestKernel:
    """The newest usable kernel of *tier*. Raises KernelNotFoundError naming the tier, the roots searched
    and how to get one."""
    roots = _roots(tier)
    found = []
    for root in roots:
        for image in (root / "boot").glob(f"vmlinuz-{tier.series}.*"):
            release = image.name.removeprefix("vmlinuz-")
            modules_dir = _modules_dir(root, release)
            if image.is_file() and series_of(release) == tier.series and modules_dir is not None:
                found.append(GuestKernel(tier.series, release, image, modules_dir))
    if not found:
        where = ", ".join(str(r) for r in roots) or "(no directory)"
        raise KernelNotFoundError(
            f"no usable {tier.series} kernel: need <root>/boot/vmlinuz-{tier.series}.* with "
            f"<root>/lib/modules/<release>/modules.dep, in roots {where}; {tier.how_to_get}"
        )
    return max(found, key=lambda k: version_key(k.release))
