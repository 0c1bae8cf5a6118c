"""The exec program's BPF path walk (programs/dpath.py) on the guest's 6.1 kernel.

Not an LSM test: it is here because this tier is where a second kernel runs. The 6.1 verifier must
accept the bounded dentry/mount walk (tp_btf), and the path must be the real one there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.model import ExecEvent
from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.programs.process import exec_program
from pybpfguard.agent.sensors import RING, private_specs
from pybpfguard.bpf.btf.layout import Layout
from pybpfguard.bpf.btf.spec import load_vmlinux
from pybpfguard.bpf.link import attach_tracing
from pybpfguard.bpf.maps import Map
from pybpfguard.bpf.ringbuf import RingReader

pytestmark = pytest.mark.kernel


def test_exec_path_walk_loads_on_6_1_and_names_a_symlinked_binary_in_a_mount(bpffs: Path, tmp_path: Path) -> None:
    real = tmp_path / "deep" / "er" / "guestprog"
    real.parent.mkdir(parents=True)
    shutil.copy(shutil.which("true") or "/bin/true", real)
    real.chmod(0o755)
    (tmp_path / "alias").symlink_to(real)
    decoder = RecordDecoder(CgroupCache())
    events: list[ExecEvent] = []
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:
        private = {name: Map.create(spec) for name, spec in private_specs(1 << 20).items()}
        try:
            maps = {**pins.maps, **private}
            with (load_program(exec_program(Layout.from_btf(load_vmlinux())), maps) as prog,
                  RingReader(maps[RING]) as ring):
                with attach_tracing(prog):
                    subprocess.run([str(tmp_path / "alias")], check=True, timeout=30)
                ring.consume(lambda rec: events.append(decoder.decode(rec)))
        finally:
            for m in private.values():
                m.close()
    [ev] = [ev for ev in events if isinstance(ev, ExecEvent) and ev.comm == "alias"]
    assert ev.path == os.path.realpath(real) == str(real)  # /tmp is a tmpfs mounted over the 9p root
