"""Layout: the offsets program generators use, live from BTF and recorded to a JSON dict."""

from __future__ import annotations

import json

import pytest

from pybpfguard.bpf.btf import (
    BitfieldMemberError,
    Field,
    Layout,
    LayoutFormatError,
    LayoutMissingError,
    Spec,
    TypeNotFoundError,
)

WANTED = [("task_struct", "tgid"), ("task_struct", "real_parent"), ("file", "f_path.dentry"), ("linux_binprm", "file")]


def test_recorded_layout_round_trips_through_json_and_answers_as_the_live_one(vmlinux: Spec) -> None:
    live = Layout.from_btf(vmlinux)
    recorded = Layout.from_dict(json.loads(json.dumps(Layout.record(vmlinux, WANTED, sizes=["pid_t"]))))
    for type_name, path in WANTED:
        assert recorded.offsetof(type_name, path) == live.offsetof(type_name, path)
        assert recorded.field(type_name, path) == live.field(type_name, path)
    assert recorded.field("task_struct", "tgid") == Field(vmlinux.member_offset("task_struct", "tgid"), 4)
    for name in ("task_struct", "file", "linux_binprm", "pid_t"):
        assert recorded.sizeof(name) == live.sizeof(name)
    assert live.sizeof("pid_t") == 4 and live.sizeof("task_struct") == vmlinux.find(4, "task_struct").size


def test_recorded_layout_refuses_what_it_did_not_record(vmlinux: Spec) -> None:
    recorded = Layout.from_dict(Layout.record(vmlinux, WANTED[:1]))
    with pytest.raises(LayoutMissingError, match=r"no member task_struct\.pid: add it to the wanted list"):
        recorded.offsetof("task_struct", "pid")
    with pytest.raises(LayoutMissingError, match="no size of dentry"):
        recorded.sizeof("dentry")


def test_recording_a_bitfield_or_unknown_type_fails_at_record_time(vmlinux: Spec) -> None:
    with pytest.raises(BitfieldMemberError):
        Layout.record(vmlinux, [("task_struct", "in_execve")])
    with pytest.raises(TypeNotFoundError):
        Layout.record(vmlinux, [("no_such_struct", "x")])


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (
            {"format": "pybpfguard.btf.layout/1", "members": {"a": {"b": {"offset": "1", "size": 2}}}, "sizes": {}},
            r"\$\.members\[\.\.\.\]\[\.\.\.\]\.offset",
        ),
        ({"format": "other/9", "members": {}, "sizes": {}}, "format 'other/9'"),
        ({"members": {}, "sizes": {}}, "format"),
    ],
)
def test_malformed_layout_dict_is_refused_saying_where(doc: dict, problem: str) -> None:
    with pytest.raises(LayoutFormatError, match=problem):
        Layout.from_dict(doc)
