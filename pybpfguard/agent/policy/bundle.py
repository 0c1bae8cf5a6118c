"""Signed policy bundles (docs/policy.md, "Signed bundles and keys"): reading, the signed message, checking
and writing; and :func:`open_policy`, what ``policy apply`` calls on a file before parsing it (integrity,
then for a bundle the checks against the trust store and the anti-rollback counter), with
:func:`commit_version` once the apply succeeded.

A bundle is a header of ``key: value`` lines, a ``---`` line, then the policy text::

    PYBPFGUARD-POLICY-BUNDLE-V2        (or AEGIS-POLICY-BUNDLE-V1)
    format_version: 2                  (1 for V1)
    policy_version: <u64>
    timestamp: <u64, Unix seconds>
    expires: <u64, Unix seconds, 0 = never>
    signer_key: <64 hex, Ed25519 public key>
    signature: <128 hex, Ed25519 signature (RFC 8032) over the signed message>
    policy_sha256: <64 hex>
    ---
    <policy text: every byte after the newline ending the --- line, unmodified>

Every field appears exactly once, in any order; a field this reader does not know is refused (it would be
unsigned text inside a signed file). Blank header lines are skipped and a trailing ``\\r`` or blank is
removed from each header line. Decimal fields are ASCII digits below 2**64; V2 also refuses leading zeros
and an upper-case ``policy_sha256`` (one spelling per value).

The signed message:

- V1 (AegisBPF's): the header's ``policy_sha256`` text as written, then ``policy_version``, ``timestamp``
  and ``expires`` in decimal, with no separator. AegisBPF builds it from the header text of the hash (any
  case; it compares the hash with the policy case-insensitively) and from the parsed numbers re-printed in
  decimal, so ``policy_version: 007`` signs as ``7``. The boundaries are ambiguous: ``(12, 3)`` and ``(1, 23)``
  give the same message.
- V2 (pybpfguard's): ``PYBPFGUARD-POLICY-BUNDLE-V2``, the lower-case hash and the three numbers joined with
  ``\\n``, no trailing newline.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pybpfguard.agent.policy.counter import read_counter, write_counter
from pybpfguard.agent.policy.integrity import check_integrity
from pybpfguard.agent.policy.model import PolicyError

if TYPE_CHECKING:  # cryptography is imported where a signature is made or checked: a plain policy never needs it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "BUNDLE_PREFIXES",
    "Bundle",
    "BundleFormat",
    "BundleRejected",
    "Check",
    "OpenedPolicy",
    "commit_version",
    "is_bundle",
    "open_policy",
    "parse_bundle",
    "sign_bundle",
    "signed_message",
    "verify",
]

#: A file whose first line starts with one of these is read as a bundle, never as a plain policy.
BUNDLE_PREFIXES = (b"AEGIS-POLICY-BUNDLE-", b"PYBPFGUARD-POLICY-BUNDLE-")
SEPARATOR = "---"
U64_MAX = (1 << 64) - 1


class BundleFormat(enum.Enum):
    """A bundle format: its first line (``.magic``) and its ``format_version`` (``.number``)."""

    V1 = "AEGIS-POLICY-BUNDLE-V1"
    V2 = "PYBPFGUARD-POLICY-BUNDLE-V2"

    @property
    def magic(self) -> str:
        return self.value

    @property
    def number(self) -> int:
        return 1 if self is BundleFormat.V1 else 2


class Field(enum.Enum):
    """The header fields, in the order :func:`sign_bundle` writes them."""

    FORMAT_VERSION = "format_version"
    POLICY_VERSION = "policy_version"
    TIMESTAMP = "timestamp"
    EXPIRES = "expires"
    SIGNER_KEY = "signer_key"
    SIGNATURE = "signature"
    POLICY_SHA256 = "policy_sha256"


_DECIMAL_FIELDS = (Field.FORMAT_VERSION, Field.POLICY_VERSION, Field.TIMESTAMP, Field.EXPIRES)
_HEX_LENGTH = {Field.SIGNER_KEY: 64, Field.SIGNATURE: 128, Field.POLICY_SHA256: 64}
_HEX = re.compile(r"[0-9a-fA-F]*")
_DIGITS = re.compile(r"[0-9]+")


class Check(enum.Enum):
    """The checks :func:`verify` makes, in its order (a bundle's header is checked by :func:`parse_bundle`)."""

    TRUSTED_KEY = "signer_key is trusted"
    SIGNATURE = "signature"
    POLICY_SHA256 = "policy_sha256"
    EXPIRES = "expires"
    POLICY_VERSION = "policy_version (anti-rollback)"


class BundleRejected(PolicyError):
    """A well-formed bundle failed :func:`verify`: ``.check`` says which check, besides PolicyError's
    ``.source``, ``.line`` (the header line of the field concerned) and ``.reason``."""

    def __init__(self, source: str, line: int, reason: str, check: Check) -> None:
        super().__init__(source, line, reason)
        self.check = check

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (BundleRejected, (self.source, self.line, self.reason, self.check))


@dataclass(frozen=True)
class Bundle:
    """A parsed bundle. ``signer_key`` (32 bytes) and ``signature`` (64 bytes) decoded; ``policy_sha256`` the
    header text as written (V1 signs that text); ``policy`` the bytes after the ``---`` line; ``lines``: field
    name -> its 1-based header line, plus ``"---"`` -> the separator's line; ``source`` names the file."""

    format: BundleFormat
    policy_version: int
    timestamp: int
    expires: int
    signer_key: bytes
    signature: bytes
    policy_sha256: str
    policy: bytes
    source: str = "<bundle>"
    lines: dict[str, int] = dataclasses.field(default_factory=dict, compare=False)

    def line(self, name: str) -> int:
        return self.lines.get(name, 0)


def is_bundle(data: bytes) -> bool:
    """Whether *data* (a whole file) is a bundle: its first line starts with one of :data:`BUNDLE_PREFIXES`."""
    return data.startswith(BUNDLE_PREFIXES)


def parse_bundle(data: bytes, source: str) -> Bundle:
    """Read a bundle (the whole file's bytes; *source* names it in errors). Checks the form only, not the
    signature (:func:`verify`). Raises PolicyError naming *source* and the header line at fault."""
    end = _separator_end(data, source)
    header = data[:end].split(b"\n")
    policy = data[end:]
    first = _header_text(header[0], source, 1)
    fmt = next((f for f in BundleFormat if f.magic == first), None)
    if fmt is None:
        known = " or ".join(f.magic for f in BundleFormat)
        raise PolicyError(source, 1, f"unknown bundle format {first[:60]!r} (expected {known})")
    values: dict[Field, str] = {}
    lines: dict[str, int] = {}
    for lineno, raw in enumerate(header[1:-2], 2):  # the last two pieces: the '---' line and b""
        text = _header_text(raw, source, lineno)
        if not text:
            continue
        name, colon, value = text.partition(":")
        field = next((f for f in Field if f.value == name.strip()), None)
        if not colon or field is None:
            expected = ", ".join(f.value for f in Field)
            raise PolicyError(source, lineno, f"expected 'field: value' with a field among {expected}, "
                                              f"found {text[:60]!r}")
        if field in values:
            raise PolicyError(source, lineno, f"duplicate {field.value} (first on line {lines[field.value]})")
        values[field] = _check_value(fmt, field, value.strip(" \t"), source, lineno)
        lines[field.value] = lineno
    lines[SEPARATOR] = len(header) - 1
    missing = [f.value for f in Field if f not in values]
    if missing:
        raise PolicyError(source, lines[SEPARATOR], f"the header ends without {', '.join(missing)}")
    if int(values[Field.FORMAT_VERSION]) != fmt.number:
        raise PolicyError(source, lines[Field.FORMAT_VERSION.value],
                          f"format_version {values[Field.FORMAT_VERSION]} in a {fmt.magic} bundle "
                          f"(expected {fmt.number})")
    return Bundle(format=fmt, policy_version=int(values[Field.POLICY_VERSION]),
                  timestamp=int(values[Field.TIMESTAMP]), expires=int(values[Field.EXPIRES]),
                  signer_key=bytes.fromhex(values[Field.SIGNER_KEY]),
                  signature=bytes.fromhex(values[Field.SIGNATURE]),
                  policy_sha256=values[Field.POLICY_SHA256], policy=policy, source=source, lines=lines)


def _separator_end(data: bytes, source: str) -> int:
    """Offset just after the newline ending the first ``---`` line (a trailing ``\\r`` or blank allowed)."""
    start = 0
    while True:
        nl = data.find(b"\n", start)
        if nl < 0:
            lineno = max(1, data.count(b"\n") + (not data.endswith(b"\n")))  # the last line
            if data[start:].rstrip() == SEPARATOR.encode():
                raise PolicyError(source, lineno, "truncated bundle: the '---' line has no newline")
            raise PolicyError(source, lineno, "truncated bundle: no '---' line ends the header")
        if data[start:nl].rstrip() == SEPARATOR.encode():
            return nl + 1
        start = nl + 1


def _header_text(raw: bytes, source: str, lineno: int) -> str:
    try:
        return raw.decode("ascii").rstrip()
    except UnicodeDecodeError:
        raise PolicyError(source, lineno, "a header line must be ASCII") from None


def _check_value(fmt: BundleFormat, field: Field, value: str, source: str, lineno: int) -> str:
    if field in _DECIMAL_FIELDS:
        if not _DIGITS.fullmatch(value) or int(value) > U64_MAX:
            raise PolicyError(source, lineno, f"{field.value}: expected a decimal number below 2**64, "
                                              f"found {value[:40]!r}")
        if fmt is BundleFormat.V2 and value != str(int(value)):
            raise PolicyError(source, lineno, f"{field.value}: leading zeros are not allowed in V2 ({value!r})")
        return value
    length = _HEX_LENGTH[field]
    if len(value) != length or not _HEX.fullmatch(value):
        raise PolicyError(source, lineno, f"{field.value}: expected {length} hex characters, "
                                          f"found {len(value)} ({value[:20]!r}...)")
    if fmt is BundleFormat.V2 and field is Field.POLICY_SHA256 and value != value.lower():
        raise PolicyError(source, lineno, "policy_sha256: V2 writes it in lower case")
    return value


def signed_message(bundle: Bundle) -> bytes:
    """The bytes the bundle's signature covers (module docstring: V1 as AegisBPF verifies it, V2 ours)."""
    numbers = (bundle.policy_version, bundle.timestamp, bundle.expires)
    if bundle.format is BundleFormat.V1:
        return (bundle.policy_sha256 + "".join(str(n) for n in numbers)).encode("ascii")
    parts = [BundleFormat.V2.magic, bundle.policy_sha256.lower(), *(str(n) for n in numbers)]
    return "\n".join(parts).encode("ascii")


def verify(bundle: Bundle, trusted_keys: Sequence[bytes], *, counter: int, now: float) -> None:
    """Check a parsed bundle, in this order: (1) ``signer_key`` is one of *trusted_keys* (32-byte public
    keys; compared in constant time, every key each time); (2) the signature verifies over
    :func:`signed_message`; (3) ``policy_sha256`` is the SHA-256 of the policy (any case); (4) ``expires`` is
    0 or later than *now* (Unix seconds); (5) ``policy_version`` is greater than *counter* (the
    anti-rollback counter). Raises :class:`BundleRejected` at the first failure, naming the check."""
    source = bundle.source
    trusted = False
    for key in trusted_keys:
        trusted |= hmac.compare_digest(key, bundle.signer_key)
    if not trusted:
        raise BundleRejected(source, bundle.line("signer_key"),
                             f"signer_key {bundle.signer_key.hex()} is not a trusted key", Check.TRUSTED_KEY)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bundle.signer_key).verify(bundle.signature, signed_message(bundle))
    except (InvalidSignature, ValueError):
        raise BundleRejected(source, bundle.line("signature"),
                             f"bad signature: it does not verify with signer_key over the {bundle.format.name} "
                             "message", Check.SIGNATURE) from None
    computed = hashlib.sha256(bundle.policy).hexdigest()
    if not hmac.compare_digest(computed, bundle.policy_sha256.lower()):
        raise BundleRejected(source, bundle.line("policy_sha256"),
                             f"policy_sha256 {bundle.policy_sha256} does not match the policy text "
                             f"(its SHA-256 is {computed})", Check.POLICY_SHA256)
    if bundle.expires and bundle.expires <= now:
        raise BundleRejected(source, bundle.line("expires"),
                             f"the bundle expired (expires {bundle.expires}, now {int(now)})", Check.EXPIRES)
    if bundle.policy_version <= counter:
        raise BundleRejected(source, bundle.line("policy_version"),
                             f"stale policy_version {bundle.policy_version}: the anti-rollback counter is "
                             f"{counter}; only a greater version is applied", Check.POLICY_VERSION)


def sign_bundle(policy_text: bytes, private_key: Ed25519PrivateKey, *, policy_version: int, timestamp: int,
                expires: int = 0, fmt: BundleFormat = BundleFormat.V2) -> bytes:
    """A bundle of *policy_text* signed with *private_key*: the header in :class:`Field` order, ``---``, the
    text unmodified. The numbers must be within 0..2**64-1 (ValueError otherwise)."""
    for name, value in (("policy_version", policy_version), ("timestamp", timestamp), ("expires", expires)):
        if not 0 <= value <= U64_MAX:
            raise ValueError(f"{name} {value} is outside 0..2**64-1")
    from cryptography.hazmat.primitives import serialization

    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    unsigned = Bundle(format=fmt, policy_version=policy_version, timestamp=timestamp, expires=expires,
                      signer_key=public, signature=b"", policy_sha256=hashlib.sha256(policy_text).hexdigest(),
                      policy=policy_text)
    signature = private_key.sign(signed_message(unsigned))
    header = [fmt.magic, f"format_version: {fmt.number}", f"policy_version: {policy_version}",
              f"timestamp: {timestamp}", f"expires: {expires}", f"signer_key: {public.hex()}",
              f"signature: {signature.hex()}", f"policy_sha256: {unsigned.policy_sha256}", SEPARATOR]
    return ("\n".join(header) + "\n").encode("ascii") + policy_text


@dataclass(frozen=True)
class OpenedPolicy:
    """A policy file that passed its checks: ``text``, the policy to parse; ``bundle``, the verified bundle
    it came in (None for a plain file); ``source``, the file's name as given."""

    text: bytes
    bundle: Bundle | None
    source: str


def open_policy(data: bytes, source: str, *, require_signature: bool, sha256: str | None,
                sha256_file: str | None, now: float | None = None) -> OpenedPolicy:
    """Check *data* (the whole policy file; *source* names it) and return the policy text to parse.

    1. Integrity (:func:`~pybpfguard.agent.policy.integrity.check_integrity`), for any file.
    2. A bundle (:func:`~pybpfguard.agent.policy.bundle.is_bundle`) is parsed and verified against the trust
       store (:func:`~pybpfguard.agent.policy.keys.load_trust_store`) and ``version_counter`` at *now* (Unix
       seconds, default the current time); a plain file is refused when *require_signature*.

    Raises PolicyError (BundleRejected for a bundle that fails a check) naming the file, and the header line
    for a bundle; UntrustedPathError when the trust store or the counter could be changed by another user;
    OSError when the sha256 file, the trust store or the counter cannot be read."""
    check_integrity(data, source, sha256, sha256_file)
    if not is_bundle(data):
        if require_signature:
            raise PolicyError(source, 0, "not a signed bundle, and --require-signature refuses anything else")
        return OpenedPolicy(data, None, source)
    from pybpfguard.agent.policy.keys import load_trust_store

    bundle = parse_bundle(data, source)
    store = load_trust_store()
    try:
        verify(bundle, store.public_keys(), counter=read_counter(), now=time.time() if now is None else now)
    except BundleRejected as err:
        if err.check is not Check.TRUSTED_KEY:
            raise
        why = f"{len(store.keys)} trusted key(s) in {store.directory}"
        if store.refused:
            why += "; refused: " + "; ".join(f"{path.name}: {reason}" for path, reason in store.refused)
        raise BundleRejected(err.source, err.line, f"{err.reason} ({why})", err.check) from None
    return OpenedPolicy(bundle.policy, bundle, source)


def commit_version(opened: OpenedPolicy) -> None:
    """After a successful apply of a bundle, set ``version_counter`` to its ``policy_version`` (atomically;
    never lowered, should another apply have raised it meanwhile). Nothing for a plain file. Raises
    PolicyError (a malformed counter), UntrustedPathError, OSError."""
    if opened.bundle is None:
        return
    if opened.bundle.policy_version > read_counter():
        write_counter(opened.bundle.policy_version)
