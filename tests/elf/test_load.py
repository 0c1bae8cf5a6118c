"""Clang-built objects loaded by pybpfguard.bpf.elf behave as written, and match libbpf (bpftool prog
loadall) instruction for instruction."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pybpfguard.bpf.elf import Collection, ConstantError
from pybpfguard.bpf.ringbuf import RingReader
from pybpfguard.bpf.types import AttachType, ProgType

pytestmark = pytest.mark.kernel
PACKET = bytes(14) + b"\x45" + bytes(49)  # 64 bytes: an Ethernet header then an IPv4-looking payload


def test_ring_buffer_producer_reports_each_test_run(compile_c):
    with Collection.open(compile_c("ringbuf")) as coll:
        coll.load()
        prog = coll.programs["report"]
        for size in (64, 80):
            assert prog.test_run(PACKET + bytes(size - 64)).retval == 1
        with RingReader(coll.maps["events"]) as reader:
            records = [bytes(r) for r in reader.records(limit=10)]
    assert [struct.unpack("<II", r)[0] for r in records] == [64 - 14, 80 - 14]  # skb->len: past ETH_HLEN


def test_two_programs_of_one_section_count_into_one_hash_map(compile_c):
    with Collection.open(compile_c("counter")) as coll:
        assert [v.name for v in coll.program_views()] == ["count_a", "count_b"]
        coll.load()
        for _ in range(3):
            coll.programs["count_a"].test_run(PACKET)
        coll.programs["count_b"].test_run(PACKET)
        counts = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in coll.maps["counts"].items()}
    assert counts == {1: 3, 2: 1}


def test_global_data_and_rodata_constants_set_before_load(compile_c):
    with Collection.open(compile_c("globals")) as coll:
        assert set(coll.map_defs) == {".rodata", ".data", ".bss", ".data.extra", ".rodata.table"}
        assert coll.map_defs[".rodata"].spec.name == "globals.rodata"
        coll.set_constant("scale", 3)
        coll.set_constant("offset", 1000)
        with pytest.raises(ConstantError, match="nosuch"):
            coll.set_constant("nosuch", 1)
        with pytest.raises(ConstantError, match="scale"):
            coll.set_constant("scale", 1 << 40)
        coll.load()
        prog = coll.programs["sum"]
        # base*scale + offset + extra + table[len & 3] + calls; skb->len is 50 (64 - ETH_HLEN): table[2] is 3
        assert prog.test_run(PACKET).retval == 100 * 3 + 1000 + 5 + 3 + 1
        assert prog.test_run(PACKET + b"\0").retval == 100 * 3 + 1000 + 5 + 4 + 2
        assert coll.maps[".bss"].lookup_elem(0) == struct.pack("<I", 2)
        coll.maps[".data"].update_elem(0, struct.pack("<I", 10))  # .data stays writable from user space
        assert prog.test_run(PACKET).retval == 10 * 3 + 1000 + 5 + 3 + 3
        with pytest.raises(OSError):
            coll.maps[".rodata"].update_elem(0, bytes(16))  # frozen
        with pytest.raises(ConstantError, match="frozen"):
            coll.set_constant("scale", 1)


def test_bpf_to_bpf_calls_and_a_bpf_loop_callback(compile_c):
    with Collection.open(compile_c("calls")) as coll:
        coll.load()
        assert coll.programs["looper"].test_run(PACKET).retval == 30 + 5 + 2
        assert coll.programs["xdp_twice"].test_run(PACKET).retval == 2
        assert coll.programs["looper"].info().btf_id  # the object's BTF went with it (func_info)


def test_tp_btf_exec_tracer_sees_a_child_exec(compile_c):
    with Collection.open(compile_c("exec")) as coll:
        (view,) = coll.program_views()
        assert (view.prog_type, view.attach_type, view.target) == (
            ProgType.BPF_PROG_TYPE_TRACING, AttachType.BPF_TRACE_RAW_TP, "sched_process_exec")
        coll.load()
        coll.attach()
        child = subprocess.run(["/bin/sh", "-c", "exec /bin/sh -c 'echo $$'"], capture_output=True, text=True,
                               check=True)
        pid = int(child.stdout)
        assert coll.maps["execs"].lookup_elem(struct.pack("<I", pid)) == struct.pack("<I", 2)


def _connect_in(cgroup: Path | None, port: int) -> int:
    code = ("import socket, sys\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
            "except PermissionError:\n    sys.exit(13)\n")

    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    return subprocess.run([sys.executable, "-c", code], preexec_fn=enter, timeout=30).returncode


def test_cgroup_connect4_denies_loopback_for_a_child_in_its_cgroup(compile_c, test_cgroup):
    with socket.create_server(("127.0.0.1", 0)) as server, Collection.open(compile_c("connect4")) as coll:
        port = server.getsockname()[1]
        coll.set_constant("denied_port", port)
        coll.load()
        coll.attach(cgroup=test_cgroup)
        assert _connect_in(test_cgroup, port) == 13
        assert _connect_in(None, port) == 0
        assert coll.maps[".bss"].lookup_elem(0) == struct.pack("<Q", 1)


def test_a_map_pinned_by_name_is_shared_by_two_loads(compile_c, bpffs):
    obj = compile_c("pinned")
    with Collection.open(obj) as first, Collection.open(obj) as second:
        first.load(pin_root=bpffs)
        second.load(pin_root=bpffs)
        assert (bpffs / "shared").exists()
        assert first.programs["bump_shared"].test_run(PACKET).retval == 1  # outer[1] was filled at load
        second.programs["bump_shared"].test_run(PACKET)
        assert second.maps["shared"].lookup_elem(0) == struct.pack("<Q", 2)
        assert first.map_defs["outer"].spec.inner is not None
        assert first.map_defs["outer"].spec.inner.max_entries == 4
        assert first.map_defs["outer"].init_values == ((1, "inner_a"),)
        assert first.maps["outer"].lookup_elem(1) == first.maps["inner_a"].info().id


@pytest.mark.parametrize(
    "name", ["ringbuf", "counter", "globals", "calls", "connect4", "exec", "kfunc", "core_read", "exec_core"])
def test_same_instructions_and_map_references_as_libbpf(compile_c, bpffs, bpftool, xlated, name):
    """bpftool prog loadall (libbpf) and this loader: the same xlated program, map ids replaced by names."""
    obj = compile_c(name)
    theirs, ours = bpffs / "libbpf", bpffs / "ours"
    subprocess.run(["bpftool", "prog", "loadall", str(obj), str(theirs)], check=True, capture_output=True)
    with Collection.open(obj) as coll:
        coll.load()
        coll.pin(ours)
        for prog in coll.programs:
            info = bpftool("prog", "show", "pinned", str(theirs / prog))
            assert isinstance(info, dict)
            assert coll.programs[prog].info().xlated_prog_len_bytes == info["bytes_xlated"], prog
            assert xlated(ours / prog) == xlated(theirs / prog), prog


def test_kfunc_calls_resolve_against_vmlinux_btf(compile_c):
    with Collection.open(compile_c("kfunc")) as coll:
        coll.load()
        coll.attach()
        subprocess.run(["/bin/true"], check=True)
        assert struct.unpack("<Q", coll.maps[".bss"].lookup_elem(0))[0] >= 1


def test_a_legacy_maps_section_map(compile_c):
    with Collection.open(compile_c("legacy")) as coll:
        assert coll.map_defs["slots"].spec.value_size == 8
        coll.load()
        coll.programs["touch"].test_run(PACKET)
        assert coll.maps["slots"].lookup_elem(1) == struct.pack("<Q", 7)


def test_a_verifier_rejection_shows_the_c_source_line(compile_c):
    """line_info from .BTF.ext went to the kernel: its log quotes the C line at fault."""
    from pybpfguard.bpf.errors import VerifierError

    with Collection.open(compile_c("rejected")) as coll, pytest.raises(VerifierError) as caught:
        coll.load()
    assert "; return *(__u32 *)(long)ctx->data == 0x45" in caught.value.log
    assert caught.value.prog_name == "unchecked"


def test_raw_tp_program_attaches_by_its_section(compile_c):
    with Collection.open(compile_c("raw_tp")) as coll:
        coll.load()
        assert set(coll.attach()) == {"count_enter"}
        for _ in range(10):
            os.getppid()
        assert struct.unpack("<Q", coll.maps[".bss"].lookup_elem(0))[0] >= 10


def test_a_typed_ksym_resolves_to_the_kernel_variable(compile_c):
    """The VAR's BTF id goes to the kernel, which then needs the variable's address from kallsyms: data
    symbols are there only with CONFIG_KALLSYMS_ALL (not on every host), else the load is refused."""
    from pybpfguard.bpf.errors import VerifierError

    with open("/proc/kallsyms") as f:
        listed = any(line.split()[2] == "bpf_prog_active" for line in f)
    with Collection.open(compile_c("ksym")) as coll:
        if not listed:
            with pytest.raises(VerifierError, match="kernel symbol 'bpf_prog_active'"):
                coll.load()
            return
        coll.load()
        coll.attach()
        subprocess.run(["/bin/true"], check=True)
        runs, active = struct.unpack("<Qi", coll.maps[".bss"].lookup_elem(0)[:12])
    assert runs >= 1 and active >= 0


def test_tp_btf_exec_tracer_with_co_re_reads_and_a_flavour(compile_c):
    """task->tgid and task->real_parent->tgid through CO-RE, and a field-existence check of a flavour
    (task_struct___future) the kernel does not have: 0. Without the resolver: NotSupportedError."""
    from pybpfguard.bpf.errors import NotSupportedError

    with Collection.open(compile_c("exec_core")) as coll:
        try:
            import pybpfguard.bpf.elf.core  # noqa: F401
        except ImportError:
            with pytest.raises(NotSupportedError, match="CO-RE"):
                coll.load()
            return
        coll.load()
        coll.attach()
        child = subprocess.run(["/bin/sh", "-c", "exec /bin/true"], check=True)
        assert child.returncode == 0
        found = [struct.unpack("<Ii", v) for k, v in coll.maps["execs"].items()]
    assert (os.getpid(), 0) in found


def test_an_unsatisfiable_co_re_read_is_refused_naming_the_field_and_c_line(compile_c):
    from pybpfguard.bpf.errors import VerifierError

    with Collection.open(compile_c("core_missing")) as coll, pytest.raises(VerifierError) as caught:
        coll.load()
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "pocket_watch" in notes and "core_missing.c:" in notes and "watched = task->pocket_watch" in notes, notes
