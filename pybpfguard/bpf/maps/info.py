"""What the kernel says about a map (``struct bpf_map_info``), and the check of an existing map against a spec."""

from __future__ import annotations

from dataclasses import dataclass

from pybpfguard.bpf._sys.maps import BpfMapInfo
from pybpfguard.bpf.maps.errors import MapIncompatibleError
from pybpfguard.bpf.maps.spec import MapSpec
from pybpfguard.bpf.maps.types import MapFlags, MapType


@dataclass(frozen=True, slots=True)
class MapInfo:
    """A map as the kernel reports it (BPF_OBJ_GET_INFO_BY_FD, include/uapi/linux/bpf.h struct bpf_map_info).

    ``id`` (kernel map id, what bpftool shows), ``name`` (at most 15 bytes), ``type``, ``key_size`` and
    ``value_size`` in bytes, ``max_entries``, ``map_flags``, ``map_extra``, ``btf_id`` (0 without BTF).
    """

    id: int
    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    map_flags: MapFlags
    map_extra: int
    btf_id: int

    @classmethod
    def from_kernel(cls, raw: BpfMapInfo) -> MapInfo:
        try:
            mtype = MapType(raw.type)
        except ValueError:  # a type newer than our table: keep the number rather than fail to open
            mtype = raw.type  # type: ignore[assignment]
        return cls(
            id=raw.id,
            name=raw.name.decode(errors="replace"),
            type=mtype,
            key_size=raw.key_size,
            value_size=raw.value_size,
            max_entries=raw.max_entries,
            map_flags=MapFlags(raw.map_flags),
            map_extra=raw.map_extra,
            btf_id=raw.btf_id,
        )

    def to_spec(self) -> MapSpec:
        """A spec describing this map (no layouts, no inner spec: the kernel does not report them)."""
        return _unchecked_spec(self)


def _unchecked_spec(info: MapInfo) -> MapSpec:
    # Built without __post_init__'s checks: an existing map is what it is, even if (e.g. a map of maps)
    # we cannot describe its inner spec.
    spec = object.__new__(MapSpec)
    for field, value in (
        ("type", info.type),
        ("max_entries", info.max_entries),
        ("key_size", info.key_size),
        ("value_size", info.value_size),
        ("flags", info.map_flags),
        ("name", info.name),
        ("key_layout", None),
        ("value_layout", None),
        ("inner", None),
        ("map_extra", info.map_extra),
    ):
        object.__setattr__(spec, field, value)
    return spec


def check_compatible(info: MapInfo, expect: MapSpec, where: str) -> None:
    """Raise MapIncompatibleError for the first of type, key_size, value_size, max_entries, map_flags,
    map_extra where the existing map (*info*, found at *where*) differs from *expect*."""
    for field, found, expected in (
        ("type", info.type, expect.type),
        ("key_size", info.key_size, expect.key_size),
        ("value_size", info.value_size, expect.value_size),
        ("max_entries", info.max_entries, expect.max_entries),
        ("map_flags", info.map_flags, expect.flags),
        ("map_extra", info.map_extra, expect.map_extra),
    ):
        if found != expected:
            raise MapIncompatibleError(where, field, expected, found)
