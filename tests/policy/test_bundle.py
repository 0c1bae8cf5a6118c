"""Signed bundles (pybpfguard/agent/policy/bundle.py): V1 and V2 bundles signed here verify; a change to any
byte of the policy, a header field or the signature is refused, as are replays, expired bundles, untrusted
keys and truncated files; the reader never raises anything but PolicyError."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpfguard.agent.policy.bundle import (
    Bundle,
    BundleFormat,
    BundleRejected,
    Check,
    is_bundle,
    parse_bundle,
    sign_bundle,
    signed_message,
    verify,
)
from pybpfguard.agent.policy.keys import public_bytes
from pybpfguard.agent.policy.model import PolicyError

POLICY = b"version=1\n[deny_path]\n/etc/shadow\n"
NOW = 1_780_000_100.0
KEY = Ed25519PrivateKey.generate()
PUB = public_bytes(KEY)
FORMATS = list(BundleFormat)


def _sign(fmt: BundleFormat = BundleFormat.V2, policy: bytes = POLICY, *, version: int = 9,
          timestamp: int = 1_780_000_000, expires: int = 0, key: Ed25519PrivateKey = KEY) -> bytes:
    return sign_bundle(policy, key, policy_version=version, timestamp=timestamp, expires=expires, fmt=fmt)


def _check(data: bytes, *, keys: list[bytes] | None = None, counter: int = 0, now: float = NOW) -> Bundle:
    bundle = parse_bundle(data, "b.bundle")
    verify(bundle, [PUB] if keys is None else keys, counter=counter, now=now)
    return bundle


def _rejected(data: bytes, **kw) -> BundleRejected:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleRejected) as info:
        _check(data, **kw)
    assert str(info.value).startswith("b.bundle: line ")
    return info.value


def _replace_field(data: bytes, name: str, value: str) -> bytes:
    lines = data.split(b"\n")
    i = next(i for i, line in enumerate(lines) if line.startswith(name.encode() + b":"))
    lines[i] = f"{name}: {value}".encode()
    return b"\n".join(lines)


def _field(data: bytes, name: str) -> str:
    return next(line for line in data.decode().split("\n") if line.startswith(name + ":")).split(": ", 1)[1]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_a_bundle_signed_here_verifies_and_carries_the_policy_unmodified(fmt):
    data = _sign(fmt, version=9, expires=int(NOW) + 60)
    assert is_bundle(data) and data.split(b"\n", 1)[0] == fmt.magic.encode()
    bundle = _check(data, counter=8)
    assert (bundle.format, bundle.policy_version, bundle.expires) == (fmt, 9, int(NOW) + 60)
    assert bundle.policy == POLICY and bundle.signer_key == PUB
    assert bundle.policy_sha256 == hashlib.sha256(POLICY).hexdigest()


def test_the_policy_is_every_byte_after_the_separator_line_even_blank_lines_and_crlf():
    policy = b"\n\r\n# comment\r\nversion=1\n"
    bundle = _check(_sign(policy=policy))
    assert bundle.policy == policy
    crlf = _sign(policy=policy).replace(b"\n", b"\r\n", 9)  # the header and the --- line written with CRLF
    assert _check(crlf).policy == policy


def test_v2_signs_the_newline_joined_message():
    bundle = parse_bundle(_sign(BundleFormat.V2, version=9, timestamp=1780000000, expires=5), "b")
    assert signed_message(bundle) == (b"PYBPFGUARD-POLICY-BUNDLE-V2\n" + hashlib.sha256(POLICY).hexdigest().encode()
                                      + b"\n9\n1780000000\n5")


def test_v1_signs_the_hash_and_the_numbers_with_no_separator():
    bundle = parse_bundle(_sign(BundleFormat.V1, version=9, timestamp=1780000000, expires=5), "b")
    assert signed_message(bundle) == hashlib.sha256(POLICY).hexdigest().encode() + b"917800000005"


def test_v1_field_boundaries_are_ambiguous_and_v2_closes_the_gap():
    """AegisBPF's V1 message cannot tell (policy_version 12, timestamp 3) from (1, 23): a signature over one is
    a valid signature over the other, so whoever holds one V1 bundle can move digits between fields (for
    example raise policy_version past the counter by taking them from the timestamp). V2 separates them."""
    v1 = _sign(BundleFormat.V1, version=12, timestamp=3)
    moved = _replace_field(_replace_field(v1, "policy_version", "1"), "timestamp", "23")
    assert signed_message(parse_bundle(v1, "b")) == signed_message(parse_bundle(moved, "b"))
    assert _check(moved).policy_version == 1  # verifies: the ambiguity is AegisBPF's format, kept for V1
    v2 = _sign(BundleFormat.V2, version=12, timestamp=3)
    moved2 = _replace_field(_replace_field(v2, "policy_version", "1"), "timestamp", "23")
    assert _rejected(moved2).check is Check.SIGNATURE


def test_v1_signs_the_hash_text_as_written_and_compares_it_with_the_policy_in_any_case():
    """As AegisBPF: its message holds the header's hash text, and its hash check ignores case."""
    upper = hashlib.sha256(POLICY).hexdigest().upper()
    message = f"{upper}9{1780000000}0".encode()
    data = (f"AEGIS-POLICY-BUNDLE-V1\nformat_version: 1\npolicy_version: 9\ntimestamp: 1780000000\nexpires: 0\n"
            f"signer_key: {PUB.hex().upper()}\nsignature: {KEY.sign(message).hex()}\npolicy_sha256: {upper}\n"
            f"---\n").encode() + POLICY
    assert _check(data).policy_sha256 == upper
    lowered = _replace_field(data, "policy_sha256", upper.lower())
    assert _rejected(lowered).check is Check.SIGNATURE


def test_v1_reads_leading_zeros_as_aegisbpf_does_and_v2_refuses_them():
    v1 = _replace_field(_sign(BundleFormat.V1, version=7), "policy_version", "007")
    assert _check(v1).policy_version == 7
    v2 = _replace_field(_sign(BundleFormat.V2, version=7), "policy_version", "007")
    with pytest.raises(PolicyError, match="line 3: policy_version: leading zeros"):
        parse_bundle(v2, "b")


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_one_changed_byte_anywhere_is_refused_or_changes_nothing(fmt):
    """Every single-byte change of a bundle is refused (by the reader or one of verify's checks), except in V1
    a leading zero in a number (``policy_version:09``), which AegisBPF reads as the same number: the bundle
    read is then exactly the one signed."""
    data = _sign(fmt)
    original = _check(data)
    accepted = []
    for i in range(len(data)):
        for new in {data[i] ^ 0x01, ord("0") if data[i] != ord("0") else ord("1")}:
            tampered = data[:i] + bytes([new]) + data[i + 1:]
            try:
                bundle = _check(tampered)
            except PolicyError:
                continue
            assert bundle == original, tampered
            accepted.append(tampered)
    assert len(accepted) == (4 if fmt is BundleFormat.V1 else 0)  # ': 9' -> ':09' in each of the 4 numbers


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_each_kind_of_tampering_fails_its_own_check(fmt):
    data = _sign(fmt, version=9)
    assert _rejected(data.replace(b"/etc/shadow", b"/etc/shadoW")).check is Check.POLICY_SHA256
    assert _rejected(_replace_field(data, "policy_version", "10")).check is Check.SIGNATURE
    assert _rejected(_replace_field(data, "timestamp", "1780000001")).check is Check.SIGNATURE
    assert _rejected(_replace_field(data, "expires", "1880000000")).check is Check.SIGNATURE
    sig = _field(data, "signature")
    flipped = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    err = _rejected(_replace_field(data, "signature", flipped))
    assert err.check is Check.SIGNATURE and err.line == 7
    other = public_bytes(Ed25519PrivateKey.generate()).hex()
    assert _rejected(_replace_field(data, "signer_key", other), keys=[PUB, bytes.fromhex(other)]).check \
        is Check.SIGNATURE


def test_an_untrusted_key_is_refused_even_with_a_good_signature():
    other = Ed25519PrivateKey.generate()
    err = _rejected(_sign(key=other))
    assert err.check is Check.TRUSTED_KEY and err.line == 6 and public_bytes(other).hex() in err.reason
    assert _rejected(_sign(), keys=[]).check is Check.TRUSTED_KEY
    assert _check(_sign(key=other), keys=[PUB, public_bytes(other)]).signer_key == public_bytes(other)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_a_replayed_or_older_policy_version_is_refused(fmt):
    assert _check(_sign(fmt, version=6), counter=5).policy_version == 6
    for version in (5, 4, 0):
        err = _rejected(_sign(fmt, version=version), counter=5)
        assert err.check is Check.POLICY_VERSION and err.line == 3 and "counter is 5" in err.reason


def test_an_expired_bundle_is_refused_and_expires_0_never_expires():
    assert _check(_sign(expires=int(NOW) + 1)).expires == int(NOW) + 1
    assert _check(_sign(expires=0), now=2.0**63).expires == 0
    for expires in (int(NOW), int(NOW) - 1, 1):
        err = _rejected(_sign(expires=expires))
        assert err.check is Check.EXPIRES and err.line == 5


def test_checks_run_in_the_documented_order():
    other = Ed25519PrivateKey.generate()
    everything_wrong = _sign(key=other, version=1, expires=1).replace(b"/etc/shadow", b"/etc/passwd")
    assert _rejected(everything_wrong, counter=5).check is Check.TRUSTED_KEY
    bad_sig = _replace_field(_sign(version=1, expires=1), "timestamp", "2").replace(b"shadow", b"passwd")
    assert _rejected(bad_sig, counter=5).check is Check.SIGNATURE
    bad_hash = _sign(version=1, expires=1).replace(b"shadow", b"passwd")
    assert _rejected(bad_hash, counter=5).check is Check.POLICY_SHA256
    assert _rejected(_sign(version=1, expires=1), counter=5).check is Check.EXPIRES


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_truncation_is_refused(fmt):
    data = _sign(fmt)
    header_end = data.index(b"\n---\n") + 5
    for cut in range(len(data)):
        with pytest.raises(PolicyError) as info:
            _check(data[:cut])
        if cut < header_end:
            assert "truncated bundle" in info.value.reason, cut  # the reader refuses it
        else:
            assert info.value.check is Check.POLICY_SHA256, cut


GOOD = _sign(BundleFormat.V2).decode()


@pytest.mark.parametrize(("text", "line", "reason"), [
    (GOOD.replace("---\n", ""), 11, "no '---' line"),
    (GOOD.split("---\n")[0] + "---", 9, "'---' line has no newline"),
    ("", 1, "no '---' line"),
    (GOOD.replace("PYBPFGUARD-POLICY-BUNDLE-V2", "PYBPFGUARD-POLICY-BUNDLE-V3"), 1, "unknown bundle format"),
    (GOOD.replace("PYBPFGUARD-POLICY-BUNDLE-V2", "AEGIS-POLICY-BUNDLE-V1"), 2, "format_version 2 in a AEGIS"),
    (GOOD.replace("format_version: 2", "format_version: 1"), 2, "format_version 1 in a PYBPFGUARD"),
    (GOOD.replace("expires: 0\n", "expires: 0\nexpires: 0\n"), 6, "duplicate expires (first on line 5)"),
    (GOOD.replace("expires: 0\n", "expires: 0\nkey_id: 7\n"), 6, "expected 'field: value'"),
    (GOOD.replace("expires: 0\n", "expires: 0\njust text\n"), 6, "expected 'field: value'"),
    (GOOD.replace("expires: 0\n", ""), 8, "the header ends without expires"),
    (GOOD.replace("timestamp: ", "timestamp: -"), 4, "timestamp: expected a decimal number"),
    (GOOD.replace("expires: 0", f"expires: {1 << 64}"), 5, "below 2**64"),
    (GOOD.replace("expires: 0", "expires: 0x10"), 5, "expected a decimal"),
    (GOOD.replace("signer_key: ", "signer_key: zz"), 6, "signer_key: expected 64 hex characters, found 66"),
    (GOOD.replace(_field(GOOD.encode(), "signer_key"), "g" * 64), 6, "64 hex"),
    (GOOD.replace(_field(GOOD.encode(), "signature"), "ab" * 63), 7, "128 hex characters, found 126"),
    (GOOD.replace(_field(GOOD.encode(), "policy_sha256"), _field(GOOD.encode(), "policy_sha256").upper()), 8,
     "lower case"),
    (GOOD.replace("timestamp: ", "timestamp: \u00e9"), 4, "must be ASCII"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 60 else "")
def test_a_malformed_header_is_refused_with_its_line(text, line, reason):
    with pytest.raises(PolicyError) as info:
        parse_bundle(text.encode(), "x.bundle")
    assert info.value.line == line and reason in info.value.reason, info.value
    assert str(info.value).startswith(f"x.bundle: line {line}: ")


def test_blank_header_lines_and_trailing_blanks_are_accepted():
    text = GOOD.replace("expires: 0\n", "expires: 0  \r\n\n").replace("timestamp: ", "timestamp:\t")
    assert parse_bundle(text.encode(), "b").expires == 0


def test_is_bundle_looks_at_the_start_of_the_first_line_only():
    assert is_bundle(b"AEGIS-POLICY-BUNDLE-V9 whatever") and is_bundle(b"PYBPFGUARD-POLICY-BUNDLE-")
    assert not is_bundle(b"version=1\nAEGIS-POLICY-BUNDLE-V1\n") and not is_bundle(b" AEGIS-POLICY-BUNDLE-V1")


def test_sign_refuses_numbers_outside_u64():
    with pytest.raises(ValueError, match="policy_version"):
        _sign(version=-1)
    with pytest.raises(ValueError, match="expires"):
        _sign(expires=1 << 64)


def _reads_or_refuses(data: bytes) -> None:
    try:
        bundle = parse_bundle(data, "fuzz")
    except PolicyError:
        return
    assert isinstance(bundle, Bundle)
    try:
        verify(bundle, [PUB], counter=0, now=NOW)
    except PolicyError:
        pass


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=600))
def test_fuzz_any_bytes_give_a_bundle_or_a_policy_error(data):
    _reads_or_refuses(data)


@_FUZZ
@given(st.sampled_from([f.magic.encode() + b"\n" for f in FORMATS]),
       st.lists(st.sampled_from([b"format_version", b"policy_version", b"timestamp", b"expires", b"signer_key",
                                 b"signature", b"policy_sha256", b"---", b"", b":", b" "]) | st.binary(max_size=20),
                max_size=12),
       st.lists(st.binary(max_size=130) | st.text("0123456789abcdefABCDEF", max_size=130).map(str.encode),
                max_size=12))
def test_fuzz_bundle_shaped_input_gives_a_bundle_or_a_policy_error(magic, names, values):
    body = b"".join(n + b": " + v + b"\n" for n, v in zip(names, values, strict=False))
    _reads_or_refuses(magic + body + b"---\n" + POLICY)


@_FUZZ
@given(st.sampled_from(FORMATS), st.data())
def test_fuzz_edits_of_a_good_bundle_give_a_bundle_or_a_policy_error(fmt, data):
    good = bytearray(_sign(fmt))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(good) - 1))
        op = data.draw(st.sampled_from(["set", "delete", "insert"]))
        byte = data.draw(st.integers(0, 255))
        if op == "set":
            good[i] = byte
        elif op == "delete":
            del good[i]
        else:
            good.insert(i, byte)
    _reads_or_refuses(bytes(good))
