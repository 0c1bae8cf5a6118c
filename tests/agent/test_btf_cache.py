"""The per-boot BTF cache (pybpfguard.agent.btfcache): a hit answers exactly what the kernel's BTF answers,
and a missing, corrupt, stale, untrusted or unwritable file only costs the parse, never correctness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pybpfguard.agent import btfcache
from pybpfguard.agent.programs import PROGRAMS
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.programs.process import fork_program
from pybpfguard.bpf.btf.errors import LayoutMissingError
from pybpfguard.bpf.btf.layout import Layout
from pybpfguard.bpf.btf.spec import load_vmlinux
from pybpfguard.bpf.link import attach_tracing

pytestmark = pytest.mark.kernel

ATTACHES = ("tp_btf/sched_process_exec", "tp_btf/sched_process_fork", "tp_btf/sched_process_exit", "iter/task",
            "lsm/file_open", "lsm/bprm_check_security")


def _record(path: Path) -> btfcache.KernelBtf:
    """A start that misses, resolves the daemon's attach targets and writes the cache at *path*."""
    btf = btfcache.acquire(path)
    for attach in ATTACHES:
        btf.attach_btf_id(attach)
    assert btf.save() == ""
    return btf


def test_second_start_reads_layout_and_attach_ids_equal_to_live_btf(kernel, tmp_path):
    path = tmp_path / "btf-cache.json"
    first = _record(path)
    assert first.source == "btf" and first.miss_reason == "no cache file"
    assert path.stat().st_mode & 0o777 == 0o600
    again = btfcache.acquire(path)
    assert again.source == "cache" and again.miss_reason == ""
    live, spec = Layout.from_btf(load_vmlinux()), load_vmlinux()
    for struct, member in btfcache.daemon_fields():
        assert again.layout.field(struct, member) == live.field(struct, member), (struct, member)
    for attach in ATTACHES:
        kind, _, target = attach.partition("/")
        assert again.attach_btf_id(attach) == spec.attach_btf_id_for(kind, target), attach
    assert again.save() == ""  # nothing new learned: not rewritten
    assert again._dirty is False


def test_every_daemon_program_generates_the_same_bytes_from_the_cache_as_from_btf(kernel, tmp_path):
    _record(tmp_path / "c.json")
    cached = btfcache.acquire(tmp_path / "c.json").layout
    live = Layout.from_btf(load_vmlinux())
    for name in btfcache.DAEMON_PROGRAMS:
        assert PROGRAMS[name].generate(cached) == PROGRAMS[name].generate(live), name


def test_cached_layout_refuses_a_field_the_registry_does_not_list(kernel, tmp_path):
    _record(tmp_path / "c.json")
    with pytest.raises(LayoutMissingError):
        btfcache.acquire(tmp_path / "c.json").layout.offsetof("task_struct", "comm")


def test_program_loaded_with_a_cached_attach_btf_id_attaches_to_its_tracepoint(kernel, tmp_path, agent_maps):
    _record(tmp_path / "c.json")
    btf = btfcache.acquire(tmp_path / "c.json")
    prog = fork_program(btf.layout)
    attach_btf_id = btf.attach_btf_id(prog.attach)
    assert btf.source == "cache" and attach_btf_id > 0
    with load_program(prog, agent_maps, attach_btf_id=attach_btf_id) as loaded, attach_tracing(loaded):
        assert loaded.info().attach_btf_id == attach_btf_id


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": "pybpfguard.btfcache/1"}', b"\x00" * 64])
def test_corrupt_cache_file_is_ignored_and_rewritten(kernel, tmp_path, content):
    path = tmp_path / "c.json"
    path.write_bytes(content)
    path.chmod(0o600)
    btf = _record(path)
    assert btf.source == "btf" and btf.miss_reason.startswith("corrupt")
    assert btfcache.acquire(path).source == "cache"


def test_cache_of_another_boot_is_stale_and_rewritten(kernel, tmp_path):
    path = tmp_path / "c.json"
    _record(path)
    doc = json.loads(path.read_text())
    doc["key"]["boot_id"] = "00000000-0000-0000-0000-000000000000"
    doc["layout"]["members"]["task_struct"]["tgid"]["offset"] += 8  # what another kernel might have said
    path.write_text(json.dumps(doc))
    btf = btfcache.acquire(path)
    assert btf.source == "btf" and btf.miss_reason == "stale: another boot or BTF file"
    assert btf.layout.offsetof("task_struct", "tgid") == load_vmlinux().member_offset("task_struct", "tgid")
    btf.save()
    assert json.loads(path.read_text())["key"]["boot_id"] == btfcache.current_key().boot_id


def test_cache_recorded_for_other_fields_is_stale(kernel, tmp_path):
    path = tmp_path / "c.json"
    _record(path)
    doc = json.loads(path.read_text())
    doc["wanted"] = doc["wanted"][1:]
    path.write_text(json.dumps(doc))
    assert btfcache.acquire(path).miss_reason == "stale: the generators read other fields"


def test_cache_file_writable_by_others_is_not_trusted(kernel, tmp_path):
    path = tmp_path / "c.json"
    _record(path)
    path.chmod(0o666)
    btf = btfcache.acquire(path)
    assert btf.source == "btf" and btf.miss_reason.startswith("untrusted")


def test_cache_reached_through_a_symlink_is_not_followed(kernel, tmp_path):
    real = tmp_path / "real.json"
    _record(real)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    btf = btfcache.acquire(link)
    assert btf.source == "btf" and btf.miss_reason.startswith("cannot open")


def test_unwritable_cache_location_still_gives_the_kernel_layout(kernel, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    btf = btfcache.acquire(blocker / "c.json")
    assert btf.layout.offsetof("task_struct", "tgid") == load_vmlinux().member_offset("task_struct", "tgid")
    assert btf.attach_btf_id("tp_btf/sched_process_exec") > 0
    assert "not-a-dir" in btf.save()
    assert not list(tmp_path.glob(".*.tmp"))


def test_attach_target_this_kernel_lacks_is_left_to_the_loader(kernel, tmp_path):
    btf = btfcache.acquire(tmp_path / "c.json")
    assert btf.attach_btf_id("tp_btf/no_such_tracepoint_pybpfguard") == 0
    btf.save()
    assert "tp_btf/no_such_tracepoint_pybpfguard" not in json.loads((tmp_path / "c.json").read_text())["attach_btf_ids"]


def test_cache_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPFGUARD_BTF_CACHE_PATH", str(tmp_path / "x.json"))
    assert btfcache.cache_path() == tmp_path / "x.json"
    monkeypatch.delenv("PYBPFGUARD_BTF_CACHE_PATH")
    assert btfcache.cache_path() == Path("/run/pybpfguard/btf-cache.json")


def test_daemon_fields_are_the_registry_members_of_the_daemon_programs():
    fields = btfcache.daemon_fields()
    assert fields == sorted(set(fields))
    for name in btfcache.DAEMON_PROGRAMS:
        assert set(PROGRAMS[name].members) <= set(fields)
    assert ("__sk_buff", "len") not in fields  # socket_counter is not the daemon's


def test_an_unreadable_boot_id_disables_the_cache_instead_of_failing_start_up(tmp_path, monkeypatch):
    from pybpfguard.agent import btfcache

    monkeypatch.setattr(btfcache, "BOOT_ID_PATH", str(tmp_path / "no-boot-id"))
    first = btfcache.current_key()
    assert first.boot_id.startswith("unknown:") and btfcache.current_key() != first  # can never match a file
