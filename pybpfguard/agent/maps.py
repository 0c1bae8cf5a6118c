"""The agent's maps (docs/maps.md): key/value layouts, specs, and the pinned set the CLI and daemon share.

Layouts of the policy maps are normative (interchangeable with AegisBPF's ``dev:ino`` and cgid values).
Every map a CLI command edits is pinned under the pin root, so ``block add`` in one process changes what
the running daemon enforces, and a restart keeps the rules. ``agent_meta`` records the layout version;
pins of another version are refused unless ``PYBPFGUARD_PIN_HEAL=1``.

The policy maps (:data:`RULE_SET_MAPS`) exist twice, as rule sets 0 and 1 (set 1's pins are named
``<name>_1``); the one-word ``rule_set`` map says which is live, and every hook reads it once and then looks
up that set only. ``policy apply`` fills the other set and switches with one write of the selector
(docs/policy.md), so no hook ever decides against a half-written set. Rule sets were added to layout 1
without a version change: pins made before them are kept as set 0 and set 1 is created beside them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.paths import InodeKey
from pybpfguard.agent.trust import require_private_dir, require_private_file
from pybpfguard.bpf.layout import Layout, Scalar
from pybpfguard.bpf.maps import Map, MapSpec, MapType

LAYOUT_VERSION = 1
DENY_PATH_KEY_BYTES = 256

#: ``{u64 ino, u32 dev, u32 pad}``; dev is the kernel encoding ``major << 20 | minor``.
INODE_KEY = Layout("inode_key", [("ino", "u64"), ("dev", "u32"), ("pad", "u32")])
BLOCK_STATS = Layout("block_stats", [("blocks", "u64"), ("ringbuf_drops", "u64")])
AGENT_META = Layout("agent_meta", [("layout_version", "u32")])
#: ``deny_cgroup_inode`` key: ``{u64 cgid, inode key}`` (24 bytes).
CGROUP_INODE_KEY = Layout("cgroup_inode_key", [("cgid", "u64"), ("ino", "u64"), ("dev", "u32"), ("pad", "u32")])

#: The runtime switches every hook reads (docs/maps.md), at AegisBPF's offsets;
#: the 8 bytes of its dropped ``policy_generation`` stay reserved.
AGENT_CONFIG = Layout("agent_config", [
    ("audit_only", "u8"), ("deadman_enabled", "u8"), ("break_glass_active", "u8"), ("enforce_signal", "u8"),
    ("emergency_disable", "u8"), ("file_policy_empty", "u8"), ("net_policy_empty", "u8"),
    ("exec_identity_flags", "u8"),
    ("deadman_deadline_ns", "u64"),
    ("deadman_ttl_seconds", "u32"), ("event_sample_rate", "u32"),
    ("sigkill_escalation_threshold", "u32"), ("sigkill_escalation_window_seconds", "u32"),
    ("reserved", "u64"),
    ("deadman_fail_static", "u8"), ("deny_ptrace", "u8"), ("deny_module_load", "u8"), ("deny_bpf", "u8"),
    ("signal_fallback_enforce", "u8"), ("pad", "u8[3]"),
])

U8 = Scalar("u8")
U32 = Scalar("u32")
U64 = Scalar("u64")

DENY_ALWAYS = 1
PROTECT_VERIFIED_EXEC = 2
COMM_KEY_BYTES = 16  # deny_comm key: char[16], NUL-padded (TASK_COMM_LEN)

#: ``allow_exec_inode`` key {ino 0, dev 0} (no file has inode 0): present = allowlist mode on in that rule set.
ALLOWLIST_ON_KEY = INODE_KEY.value(ino=0, dev=0)

#: The maps a policy fills, each pinned once per rule set (set 1 as ``<name>_1``), in a fixed order.
RULE_SET_MAPS = ("deny_inode", "deny_path", "allow_cgroup", "deny_comm", "deny_cgroup_inode", "allow_exec_inode")
RULE_SETS = 2


def set_map_name(name: str, index: int) -> str:
    """The pin (and program map) name of rule-set map *name* in set *index*: ``deny_inode``, ``deny_inode_1``
    (bpffs refuses a dot in a pin name: it keeps those for its own files, ``maps.debug``)."""
    return name if index == 0 else f"{name}_{index}"


def rule_set_specs(max_deny_inodes: int = 65536, max_deny_paths: int = 16384) -> dict[str, MapSpec]:
    """One rule set's maps, by name (:data:`RULE_SET_MAPS`)."""
    h = MapType.BPF_MAP_TYPE_HASH
    return {
        "deny_inode": MapSpec(h, max_deny_inodes, name="deny_inode", key_layout=INODE_KEY, value_layout=U8),
        "deny_path": MapSpec(h, max_deny_paths, key_size=DENY_PATH_KEY_BYTES, name="deny_path", value_layout=U8),
        "allow_cgroup": MapSpec(h, 1024, name="allow_cgroup", key_layout=U64, value_layout=U8),
        "deny_comm": MapSpec(h, 1024, key_size=COMM_KEY_BYTES, name="deny_comm", value_layout=U8),
        "deny_cgroup_inode": MapSpec(h, 32768, name="deny_cg_inode", key_layout=CGROUP_INODE_KEY, value_layout=U8),
        "allow_exec_inode": MapSpec(h, max_deny_inodes, name="allow_exec_ino", key_layout=INODE_KEY,
                                    value_layout=U8),
    }


def pinned_specs(max_deny_inodes: int = 65536, max_deny_paths: int = 16384) -> dict[str, MapSpec]:
    """The maps pinned under the pin root, by pin name (both rule sets' maps included)."""
    sets = rule_set_specs(max_deny_inodes, max_deny_paths)
    return {
        **{set_map_name(name, i): spec for i in range(RULE_SETS) for name, spec in sets.items()},
        # which rule set the hooks use: u32 0 or 1
        "rule_set": MapSpec(MapType.BPF_MAP_TYPE_ARRAY, 1, name="rule_set", key_layout=U32, value_layout=U32),
        "survival_allowlist": MapSpec(MapType.BPF_MAP_TYPE_HASH, 256, name="survival_allow", key_layout=INODE_KEY,
                                      value_layout=U8),
        "block_stats": MapSpec(MapType.BPF_MAP_TYPE_PERCPU_ARRAY, 1, name="block_stats", key_layout=U32,
                               value_layout=BLOCK_STATS),
        "agent_meta": MapSpec(MapType.BPF_MAP_TYPE_ARRAY, 1, name="agent_meta", key_layout=U32,
                              value_layout=AGENT_META),
        "agent_config": MapSpec(MapType.BPF_MAP_TYPE_ARRAY, 1, name="agent_config", key_layout=U32,
                                value_layout=AGENT_CONFIG),
        # edit generation and the daemon's acknowledgement and heartbeat (pybpfguard.agent.rulesync)
        "rule_sync": MapSpec(MapType.BPF_MAP_TYPE_ARRAY, 4, name="rule_sync", key_layout=U32, value_layout=U64),
    }


class PinLayoutMismatch(AgentError, RuntimeError):
    """The pins under the pin root were written by another layout version."""


@dataclass
class RuleSet:
    """One rule set's open maps (:data:`RULE_SET_MAPS`); ``index`` 0 or 1."""

    index: int
    deny_inode: Map
    deny_path: Map
    allow_cgroup: Map
    deny_comm: Map
    deny_cgroup_inode: Map
    allow_exec_inode: Map

    @property
    def maps(self) -> dict[str, Map]:
        """Rule-set map name -> map."""
        return {name: getattr(self, name) for name in RULE_SET_MAPS}

    def clear(self) -> None:
        """Delete every entry of every map of this set (only ever the set the hooks do not use): one undecoded
        batch walk and one batch delete per map (batch operations: Linux 5.6, older than the ring buffer
        every agent program needs)."""
        for m in self.maps.values():
            keys, _, count = m.lookup_batch_raw()
            if count:
                m.delete_batch(keys)

    def comm_names(self) -> frozenset[bytes]:
        """The ``deny_comm`` basenames (keys without their NUL padding)."""
        return frozenset(bytes(k).rstrip(b"\0") for k in self.deny_comm)

    def exec_allowlist(self) -> tuple[frozenset[InodeKey], bool]:
        """``(allowed executables as (ino, dev), allowlist mode on)``: the set's ``allow_exec_inode`` with its
        :data:`ALLOWLIST_ON_KEY` sentinel taken out."""
        keys = frozenset((k.ino, k.dev) for k in self.allow_exec_inode)
        on = (ALLOWLIST_ON_KEY.ino, ALLOWLIST_ON_KEY.dev)
        return keys - {on}, on in keys


@dataclass
class PinnedMaps:
    """The open pinned maps: the two rule sets (:attr:`sets`) and one typed attribute per other pin (named as
    in :func:`pinned_specs`); a context manager that closes them (the pins stay).

    ``deny_inode``, ``deny_path``, ``allow_cgroup``, ``deny_comm``, ``deny_cgroup_inode`` and
    ``allow_exec_inode`` are those of the live set as read at open (or at the last :meth:`refresh_live`):
    what a rule edit changes. Only ``policy apply`` switches sets, under the rule-edit lock, so the live set
    an edit holding that lock sees cannot change under it."""

    root: Path
    sets: tuple[RuleSet, RuleSet]
    rule_set: Map
    survival_allowlist: Map
    block_stats: Map
    agent_meta: Map
    agent_config: Map
    rule_sync: Map
    live: RuleSet = field(init=False)

    def __post_init__(self) -> None:
        self.refresh_live()

    def live_index(self) -> int:
        """The set the hooks use now (read from the ``rule_set`` map; anything but 1 reads as 0, as the
        programs read it)."""
        return 1 if self.rule_set.lookup_elem(0) == 1 else 0

    def refresh_live(self) -> RuleSet:
        """Re-read the selector; returns (and keeps as :attr:`live`) the live set."""
        self.live = self.sets[self.live_index()]
        return self.live

    def switch_to(self, index: int) -> None:
        """Make set *index* live: one write of the selector, which every hook reads before any rule map."""
        self.rule_set.update_elem(0, index)
        self.live = self.sets[index]

    @property
    def deny_inode(self) -> Map:
        return self.live.deny_inode

    @property
    def deny_path(self) -> Map:
        return self.live.deny_path

    @property
    def allow_cgroup(self) -> Map:
        return self.live.allow_cgroup

    @property
    def deny_comm(self) -> Map:
        return self.live.deny_comm

    @property
    def deny_cgroup_inode(self) -> Map:
        return self.live.deny_cgroup_inode

    @property
    def allow_exec_inode(self) -> Map:
        return self.live.allow_exec_inode

    @property
    def maps(self) -> dict[str, Map]:
        """Pin name -> map, for the program loader (which resolves a program's maps by name): both sets'
        maps under their pin names (:func:`set_map_name`) and every other pin."""
        out = {set_map_name(name, s.index): m for s in self.sets for name, m in s.maps.items()}
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("root", "sets", "live")})
        return out

    def close(self) -> None:
        for m in self.maps.values():
            m.close()

    def __enter__(self) -> PinnedMaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(cls, root: Path, *, create: bool = True, heal: bool = False, **sizes: int) -> PinnedMaps:
        """Open every pinned map under *root*, creating (and pinning) the missing ones when *create*.

        A pinned map whose type or key/value size differs raises MapIncompatibleError; one whose
        max_entries differs is kept (rules are never dropped silently). Raises PinLayoutMismatch when
        ``agent_meta`` holds another layout version, unless *heal* (then the pins are recreated empty).
        Raises UntrustedPathError when *root* or a pin in it could be changed by another user
        (:mod:`pybpfguard.agent.trust`).
        """
        specs = pinned_specs(**sizes)
        require_private_dir(root, create=create)
        opened: dict[str, Map] = {}
        try:
            meta_path = root / "agent_meta"
            if os.path.lexists(meta_path):
                require_private_file(meta_path)
                with Map.from_pinned(meta_path, expect=specs["agent_meta"]) as meta:
                    version = meta.lookup_elem(0).layout_version
                if version != LAYOUT_VERSION:
                    if not heal:
                        raise PinLayoutMismatch(
                            f"pins under {root} have layout version {version}, this agent uses {LAYOUT_VERSION};"
                            " set PYBPFGUARD_PIN_HEAL=1 to recreate them (their rules are lost)")
                    for name in specs:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(root / name)
            for name, spec in specs.items():
                path = root / name
                if os.path.lexists(path):
                    require_private_file(path)  # a pin another user could have put or replaced is not ours
                    opened[name] = Map.from_pinned(path, expect=spec, any_max_entries=True)
                elif create:
                    m = Map.create(spec)
                    opened[name] = m
                    if name == "agent_meta":
                        m.update_elem(0, AGENT_META.value(layout_version=LAYOUT_VERSION))
                    m.pin(path)
                else:
                    raise FileNotFoundError(f"{path}: not pinned; start the daemon or run a rule command first")
        except BaseException:
            for m in opened.values():
                m.close()
            raise
        sets = tuple(RuleSet(i, **{name: opened.pop(set_map_name(name, i)) for name in RULE_SET_MAPS})
                     for i in range(RULE_SETS))
        return cls(root, sets, **opened)  # type: ignore[arg-type]
