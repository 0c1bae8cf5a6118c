"""Lint advisories, the not-enforced notices, and the canonical form (docs/policy.md, "Policy files")."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpfguard.agent.policy.lint import SECTION_ORDER, Advisory, advisories, canonical
from pybpfguard.agent.policy.model import Section
from pybpfguard.agent.policy.parse import parse_policy
from pybpfguard.agent.policy.support import NOT_ENFORCED, unsupported

GOLDEN = Path(__file__).parent / "golden"
ENFORCED = {Section.DENY_PATH, Section.DENY_INODE, Section.ALLOW_CGROUP, Section.DENY_COMM, Section.CGROUP_DENY_INODE,
            Section.DENY_BINARY_HASH, Section.ALLOW_BINARY_HASH, Section.SCAN_PATHS}


def _parse(text: str):  # type: ignore[no-untyped-def]
    return parse_policy(text.encode(), "p.conf")


def _warnings(text: str, host: bool = False) -> list[tuple[int, str]]:
    return [(a.line, a.message) for a in advisories(_parse(text), host=host) if not a.notice]


def test_a_clean_policy_has_no_advisory(tmp_path):
    f = tmp_path / "secret"
    f.write_text("x")
    assert advisories(_parse(f"version=1\n[deny_path]\n{f}\n[deny_inode]\n1:2\n")) == []


def test_a_missing_version_is_advised_about_the_whole_file():
    assert _warnings("[deny_inode]\n1:2\n") == [(0, "no version header; the policy is read as version=1 "
                                                   "(add version=N first)")]


def test_duplicates_are_advised_at_the_dropped_line():
    assert _warnings("version=1\n[deny_inode]\n1:2\n\n1:2\n") == [
        (5, "duplicate [deny_inode] entry (first at line 3); dropped")]


def test_the_same_path_in_deny_path_and_protect_path():
    warnings = _warnings("version=4\n[deny_path]\n/etc/shadow\n[protect_path]\n/etc/passwd\n/etc/shadow\n"
                         "[allow_binary_hash]\nsha256:" + "0" * 64 + "\n")
    assert [(line, "in both [deny_path] (line 3) and [protect_path]" in m) for line, m in warnings] == [(6, True)]


def test_a_deny_ip_covered_by_a_deny_cidr():
    warnings = _warnings("version=1\n[deny_ip]\n10.1.2.3\n192.168.0.1\n2001:db8::5\n::ffff:10.0.0.1\n"
                         "[deny_cidr]\n10.0.0.0/8\n10.1.0.0/16\n2001:db8::/32\n")
    assert warnings == [(3, "10.1.2.3 is already covered by [deny_cidr] 10.0.0.0/8 (line 8)"),
                        (5, "2001:db8::5 is already covered by [deny_cidr] 2001:db8::/32 (line 10)")]


def test_deny_bpf_without_deny_module_load():
    warnings = _warnings("version=1\n[deny_inode]\n1:2\n[deny_bpf]\n")
    assert [line for line, m in warnings if "[deny_bpf] without [deny_module_load]" in m] == [4]
    assert _warnings("version=1\n[deny_inode]\n1:2\n[deny_bpf]\n[deny_module_load]\n") == []


def test_kernel_toggles_with_no_file_rule():
    warnings = _warnings("version=1\n[deny_comm]\nxmrig\n[deny_ptrace]\n[deny_module_load]\n")
    assert [line for line, m in warnings if "kernel-tamper flags with no file rule" in m] == [4]
    assert _warnings("version=1\n[deny_path]\n/x\n[deny_ptrace]\n") == []


def test_protect_without_a_binary_hash_list():
    warnings = _warnings("version=4\n[deny_inode]\n1:2\n[protect_connect]\n")
    assert [line for line, m in warnings if "protect_* without a binary-hash list" in m] == [4]
    assert _warnings("version=4\n[protect_connect]\n[allow_binary_hash]\nsha256:" + "a" * 64 + "\n") == []


def test_a_deny_comm_naming_a_survival_binary():
    warnings = _warnings("version=1\n[deny_comm]\nxmrig\nsshd\nbash\n")
    assert [line for line, m in warnings if "survival-list binary" in m] == [4, 5]


def test_a_path_longer_than_the_path_map_key():
    warnings = _warnings("version=1\n[deny_path]\n/" + "a" * 300 + "\n/short\n")
    assert [line for line, m in warnings if "enforced by inode alone" in m] == [3]


def test_a_path_that_does_not_exist_only_with_host(tmp_path):
    here = tmp_path / "here"
    here.write_text("")
    text = (f"version=6\n[deny_path]\n{here}\n{tmp_path}/gone\n[allow_cgroup]\n{tmp_path}/nocg\ncgid:5\n"
            f"[scan_paths]\n{tmp_path}/noscan\n[cgroup_deny_inode]\n{tmp_path}/nocg2 1:2\n")
    missing = [line for line, m in _warnings(text, host=True) if "does not exist on this host" in m]
    assert missing == [4, 6, 9, 11]
    assert _warnings(text, host=False) == []


def test_a_rule_path_that_is_a_directory_only_with_host(tmp_path):
    """A deny_path on a directory denies opening the directory (listing it), not the files in it: a new user
    who writes /etc/secrets must be told, by lint and by apply."""
    from pybpfguard.agent.policy.parse import parse_policy
    from pybpfguard.agent.policy.resolve import resolve_policy

    (tmp_path / "f").write_text("")
    text = f"version=6\n[deny_path]\n{tmp_path}\n{tmp_path}/f\n[scan_paths]\n{tmp_path}\n"
    dirs = [line for line, m in _warnings(text, host=True) if "is a directory" in m]
    assert dirs == [3]
    assert _warnings(text, host=False) == []
    notes = resolve_policy(parse_policy(text.encode(), "p.conf"), "p.conf", scanner=lambda ds, roots: None).notes
    assert [n for n in notes if "line 3" in n and "is a directory" in n and "not the files in it" in n]


def test_advisories_are_sorted_by_line():
    found = advisories(_parse("[deny_comm]\nsh\nsh\n[deny_ip]\n1.2.3.4\n[deny_bpf]\n"), host=False)
    assert [a.line for a in found] == sorted(a.line for a in found)


def test_not_enforced_covers_exactly_the_sections_this_release_lacks():
    assert set(NOT_ENFORCED) == set(Section) - ENFORCED
    network = {Section.DENY_IP, Section.DENY_CIDR, Section.DENY_PORT, Section.DENY_IP_PORT, Section.CGROUP_DENY_IP,
               Section.CGROUP_DENY_PORT}
    assert {NOT_ENFORCED[s] for s in network} == {"network enforcement is not in this release"}


def test_unsupported_lists_present_sections_with_their_header_line():
    p = parse_policy((GOLDEN / "all_sections.conf").read_bytes(), "all")
    found = unsupported(p)
    assert [s for s, _, _ in found] == sorted(NOT_ENFORCED, key=lambda s: p.section_lines[s])
    assert all(line == p.section_lines[s] and reason == NOT_ENFORCED[s] for s, line, reason in found)
    assert unsupported(_parse("version=6\n[deny_ip]\n[deny_path]\n/x\n")) == []  # an empty section asks nothing


def test_each_unsupported_section_gets_one_notice():
    found = advisories(_parse("version=1\n[deny_inode]\n1:2\n[deny_port]\n22\n[deny_ptrace]\n"), host=False)
    notices = [a for a in found if a.notice]
    assert notices == [
        Advisory(4, "[deny_port] is accepted but not enforced by this release (network enforcement is not in "
                    "this release); policy apply refuses it", notice=True),
        Advisory(6, "[deny_ptrace] is accepted but not enforced by this release (the kernel-tamper hooks are not "
                    "in this release); policy apply refuses it", notice=True)]


@pytest.mark.parametrize("name", ["example", "all_sections"])
def test_the_canonical_form_of_the_golden_policies(name):
    p = parse_policy((GOLDEN / f"{name}.conf").read_bytes(), name)
    text = canonical(p)
    assert text == (GOLDEN / f"{name}.canonical").read_bytes()
    again = parse_policy(text, "fixed")
    assert canonical(again) == text
    assert {s: set(again.values(s)) for s in again.sections if again.values(s)} == \
        {s: set(p.values(s)) for s in p.sections if p.values(s)}
    assert again.flags.keys() == p.flags.keys() and again.version == p.version


def test_canonical_sorts_deduplicates_and_respells():
    p = _parse("# header\nversion = 3\n[deny_comm]\nzz\naa\n[deny_port]\n443:tcp:connect\n80\n8080::\n"
               "[deny_ip]\n10.0.0.10\n10.0.0.2\n2001:DB8:0::1\n[deny_inode]\n10:2\n2:10\n02:10\n"
               "[deny_binary_hash]\nsha256:" + "AB" * 32 + "\nsha256:" + "ab" * 32 + "\n[scan_paths]\n")
    assert canonical(p).decode() == (
        "version=3\n[deny_inode]\n2:10\n10:2\n[deny_ip]\n10.0.0.2\n10.0.0.10\n2001:db8::1\n"
        "[deny_port]\n80:any:both\n443:tcp:egress\n8080:any:both\n[deny_binary_hash]\nsha256:" + "ab" * 32 + "\n"
        "[deny_comm]\naa\nzz\n")


def test_canonical_of_an_empty_policy_is_its_version():
    assert canonical(_parse("")) == b"version=1\n"


def test_the_section_order_is_the_format_order():
    assert SECTION_ORDER[:3] == (Section.DENY_PATH, Section.DENY_INODE, Section.PROTECT_PATH)
    assert set(SECTION_ORDER) == set(Section) and len(SECTION_ORDER) == len(Section)

