"""The exec signal fallback (programs/exec_fallback.py) on the guest's 6.1 kernel.

Not an LSM test: it is here because this tier is where a second kernel runs. The 6.1 verifier must accept
the exec program with the fallback's second (shorter) path walk, and ``bpf_send_signal(SIGKILL)`` at
``sched_process_exec`` must kill the new image before it runs there too (measured on 6.18 in docs/kernel.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.model import BlockEvent
from pybpfguard.agent.maps import AGENT_CONFIG, INODE_KEY, PinnedMaps
from pybpfguard.agent.paths import kernel_dev
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.programs.process import exec_program
from pybpfguard.agent.sensors import RING, private_specs
from pybpfguard.bpf.btf.layout import Layout
from pybpfguard.bpf.btf.spec import load_vmlinux
from pybpfguard.bpf.link import attach_tracing
from pybpfguard.bpf.maps import Map
from pybpfguard.bpf.ringbuf import RingReader

pytestmark = pytest.mark.kernel


def test_exec_signal_fallback_kills_a_denied_binary_before_it_runs_on_6_1(bpffs: Path, tmp_path: Path) -> None:
    denied, other = tmp_path / "guest-denied", tmp_path / "guest-other"
    for path in (denied, other):
        shutil.copy(shutil.which("true") or "/bin/true", path)
        path.chmod(0o755)
    st = os.stat(denied)
    decoder = RecordDecoder(CgroupCache())
    events: list[object] = []
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:
        private = {name: Map.create(spec) for name, spec in private_specs(1 << 20).items()}
        try:
            maps = {**pins.maps, **private}
            pins.agent_config.update_elem(0, AGENT_CONFIG.value(signal_fallback_enforce=1, event_sample_rate=1))
            pins.deny_inode.update_elem(INODE_KEY.value(ino=st.st_ino, dev=kernel_dev(st.st_dev)), 1)
            with (load_program(exec_program(Layout.from_btf(load_vmlinux())), maps) as prog,
                  RingReader(maps[RING]) as ring):
                with attach_tracing(prog):
                    killed = subprocess.run([str(denied)], timeout=30).returncode
                    ran = subprocess.run([str(other)], timeout=30).returncode
                ring.consume(lambda rec: events.append(decoder.decode(rec)))
        finally:
            for m in private.values():
                m.close()
    assert (killed, ran) == (-signal.SIGKILL, 0)
    [ev] = [ev for ev in events if isinstance(ev, BlockEvent)]
    assert (ev.action, ev.path, ev.ino, ev.comm) == ("KILL", str(denied), st.st_ino, "guest-denied")
