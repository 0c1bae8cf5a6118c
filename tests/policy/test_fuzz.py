"""Fuzzing the policy parser: any byte string, and structured mutations of valid policies, give a Policy or a
PolicyError, never another exception; whatever parses has a stable canonical form with the same rules."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpfguard.agent.policy.lint import advisories, canonical
from pybpfguard.agent.policy.model import Policy, PolicyError, Section
from pybpfguard.agent.policy.parse import parse_policy

GOLDEN = [p.read_bytes() for p in sorted((Path(__file__).parent / "golden").glob("*.conf"))]

# Fragments near the edges of every entry syntax, valid and not.
_ATOMS = [
    "0", "1", "65535", "65536", "18446744073709551615", "18446744073709551616", "4294967296", "01",
    "tcp", "udp", "any", "sctp", "egress", "connect", "bind", "both", "", ":", "::", "/", "//", "/etc/shadow",
    "/a b", "rel", "*", "?", "[", "]", "#", "=", " ", "\t", "10.0.0.1", "10.0.0.0", "256.0.0.1", "::1",
    "2001:db8::", "fe80::1%lo", "example.com", "[::1]", "[10.0.0.1]", "cgid:", "cgid:0", "cgid:7", "sha256:",
    "a" * 64, "F" * 64, "\u00e9", "\x00", "\r", "/sys/fs/cgroup/x", "x" * 16, "version", "/32", "/129",
]
_HEADERS = [f"[{s.value}]" for s in Section] + ["[nope]", "[]", "[deny_path", "version=6", "version=1",
                                                "version=3", "version=9", "mode=1", "# comment", ""]


@st.composite
def _entry(draw: st.DrawFn) -> str:
    return "".join(draw(st.lists(st.sampled_from(_ATOMS), min_size=1, max_size=5)))


_LINE = st.one_of(st.sampled_from(_HEADERS), _entry())
_ENDING = st.sampled_from(["\n", "\r\n"])


@st.composite
def _structured(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(_LINE, _ENDING), max_size=30))
    head = draw(st.sampled_from(["version=6\n", "version=2\n", ""]))
    return (head + "".join(line + end for line, end in lines)).encode("utf-8", "surrogatepass")


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A golden policy with a few edits: a byte replaced, inserted or deleted, a line duplicated or moved."""
    data = bytearray(draw(st.sampled_from(GOLDEN)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "dup_line", "move_line"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[at:at + draw(st.integers(1, 8))]
        else:
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            line = lines[i] if kind == "dup_line" else lines.pop(i)
            lines.insert(min(j, len(lines)), line)
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def _check(data: bytes) -> None:
    try:
        policy = parse_policy(data, "fuzz.conf")
    except PolicyError as err:
        assert err.source == "fuzz.conf" and err.line >= 0 and err.reason
        assert str(err).startswith("fuzz.conf: ")
        return
    assert isinstance(policy, Policy)
    advisories(policy, host=False)
    text = canonical(policy)
    again = parse_policy(text, "canonical")
    assert canonical(again) == text
    assert again.version == policy.version and again.flags.keys() == policy.flags.keys()
    assert {s: set(again.values(s)) for s in again.sections if again.values(s)} == \
        {s: set(policy.values(s)) for s in policy.sections if policy.values(s)}
    assert again.duplicates == []


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_policy_or_a_policy_error(data):
    _check(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_structured())
def test_structured_policies_give_a_policy_or_a_policy_error(data):
    _check(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_golden_policies_give_a_policy_or_a_policy_error(data):
    _check(data)


def test_the_golden_policies_pass_the_same_checks():
    for data in GOLDEN:
        _check(data)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("/ab*?[\0\u00e9:0123456789"), max_size=12))
def test_the_fast_paths_accept_what_the_full_checks_accept(text):
    from pybpfguard.agent.paths import PathRuleError, check_rule_path
    from pybpfguard.agent.policy.parse import parse_entry

    def outcome(fn):  # type: ignore[no-untyped-def]
        try:
            return fn()
        except (ValueError, PathRuleError):
            return "refused"

    assert outcome(lambda: parse_entry(Section.DENY_PATH, text)) == outcome(lambda: check_rule_path(text.encode()))
    dev, colon, ino = text.partition(":")
    slow = outcome(lambda: (int(dev), int(ino)) if colon and dev.isdigit() and ino.isdigit() else int("x"))
    fast = outcome(lambda: parse_entry(Section.DENY_INODE, text))
    assert (fast == "refused") == (slow == "refused" or slow[0] >= 2**32 or slow[1] >= 2**64)
