"""The agent's maps (docs/maps.md): key/value layouts, specs, and the pinned set the CLI and daemon share.

Layouts of the policy maps are normative (interchangeable with AegisBPF's ``dev:ino`` and cgid values).
Every map a CLI command edits is pinned under the pin root, so ``block add`` in one process changes what
the running daemon enforces, and a restart keeps the rules. ``agent_meta`` records the layout version;
pins of another version are refused unless ``PYBPFGUARD_PIN_HEAL=1``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields
from pathlib import Path

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.trust import require_private_dir, require_private_file
from pybpfguard.bpf.layout import Layout, Scalar
from pybpfguard.bpf.maps import Map, MapSpec, MapType

LAYOUT_VERSION = 1
DENY_PATH_KEY_BYTES = 256

#: ``{u64 ino, u32 dev, u32 pad}``; dev is the kernel encoding ``major << 20 | minor``.
INODE_KEY = Layout("inode_key", [("ino", "u64"), ("dev", "u32"), ("pad", "u32")])
BLOCK_STATS = Layout("block_stats", [("blocks", "u64"), ("ringbuf_drops", "u64")])
AGENT_META = Layout("agent_meta", [("layout_version", "u32")])

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


def pinned_specs(max_deny_inodes: int = 65536, max_deny_paths: int = 16384) -> dict[str, MapSpec]:
    """The maps pinned under the pin root, by pin name."""
    h = MapType.BPF_MAP_TYPE_HASH
    return {
        "deny_inode": MapSpec(h, max_deny_inodes, name="deny_inode", key_layout=INODE_KEY, value_layout=U8),
        "deny_path": MapSpec(h, max_deny_paths, key_size=DENY_PATH_KEY_BYTES, name="deny_path", value_layout=U8),
        "allow_cgroup": MapSpec(h, 1024, name="allow_cgroup", key_layout=U64, value_layout=U8),
        "survival_allowlist": MapSpec(h, 256, name="survival_allow", key_layout=INODE_KEY, value_layout=U8),
        "deny_comm": MapSpec(h, 1024, key_size=16, name="deny_comm", value_layout=U8),
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
class PinnedMaps:
    """The open pinned maps, one typed attribute per pin (named as in :func:`pinned_specs`); a context
    manager that closes them (the pins stay)."""

    root: Path
    deny_inode: Map
    deny_path: Map
    allow_cgroup: Map
    survival_allowlist: Map
    deny_comm: Map
    block_stats: Map
    agent_meta: Map
    agent_config: Map
    rule_sync: Map

    @property
    def maps(self) -> dict[str, Map]:
        """Pin name -> map, for the program loader (which resolves a program's maps by name)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "root"}

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
        return cls(root, **opened)
