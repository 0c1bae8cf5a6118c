"""What ``policy apply`` checks before it parses a policy file (docs/policy.md, "Signed bundles and keys").

:func:`open_policy` takes the file's bytes and returns the policy text to parse: the file itself, or the
policy inside a signed bundle once the bundle verified against the trust store and the anti-rollback
counter. :func:`commit_version` records a bundle's ``policy_version`` once the apply succeeded.

Plain-file integrity: ``--sha256 HEX``, ``--sha256-file P`` (``sha256sum`` output: its first token), or,
when neither is given, ``PYBPFGUARD_POLICY_SHA256`` / ``PYBPFGUARD_POLICY_SHA256_FILE``; the SHA-256 of the
whole file (a bundle included) must match, in any case. Every one given is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from pathlib import Path

from pybpfguard.agent.config import env
from pybpfguard.agent.policy.bundle import Bundle, BundleRejected, Check, is_bundle, parse_bundle, verify
from pybpfguard.agent.policy.counter import read_counter, write_counter
from pybpfguard.agent.policy.keys import load_trust_store
from pybpfguard.agent.policy.model import PolicyError

__all__ = ["OpenedPolicy", "commit_version", "open_policy"]

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_MAX_SHA256_FILE = 1 << 16


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

    1. Integrity (module docstring), for any file.
    2. A bundle (:func:`~pybpfguard.agent.policy.bundle.is_bundle`) is parsed and verified against the trust
       store (:func:`~pybpfguard.agent.policy.keys.load_trust_store`) and ``version_counter`` at *now* (Unix
       seconds, default the current time); a plain file is refused when *require_signature*.

    Raises PolicyError (BundleRejected for a bundle that fails a check) naming the file, and the header line
    for a bundle; UntrustedPathError when the trust store or the counter could be changed by another user;
    OSError when the sha256 file, the trust store or the counter cannot be read."""
    _check_integrity(data, source, sha256, sha256_file)
    if not is_bundle(data):
        if require_signature:
            raise PolicyError(source, 0, "not a signed bundle, and --require-signature refuses anything else")
        return OpenedPolicy(data, None, source)
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


def _check_integrity(data: bytes, source: str, sha256: str | None, sha256_file: str | None) -> None:
    expected: list[tuple[str, str]] = []  # (hex, where it came from)
    if sha256 is None and sha256_file is None:
        sha256, sha256_file = env("POLICY_SHA256") or None, env("POLICY_SHA256_FILE") or None
        origin = ("PYBPFGUARD_POLICY_SHA256", "PYBPFGUARD_POLICY_SHA256_FILE")
    else:
        origin = ("--sha256", "--sha256-file")
    if sha256 is not None:
        expected.append((_expected_hex(sha256.strip(), origin[0]), origin[0]))
    if sha256_file is not None:
        expected.append((_read_sha256_file(sha256_file), f"{origin[1]} {sha256_file}"))
    if not expected:
        return
    actual = hashlib.sha256(data).hexdigest()
    for hex_digest, where in expected:
        if not hmac.compare_digest(hex_digest.lower(), actual):
            raise PolicyError(source, 0, f"SHA-256 mismatch: {where} expects {hex_digest.lower()}, the file's is "
                                         f"{actual}; nothing applied")


def _expected_hex(text: str, where: str, line: int = 0) -> str:
    if not _SHA256_HEX.fullmatch(text):
        raise PolicyError(where, line, f"expected a SHA-256 as 64 hex characters, found {text[:70]!r}")
    return text


def _read_sha256_file(path: str) -> str:
    """The first token of *path* (``sha256sum`` writes ``<hex>  <name>``, with a leading ``\\`` when it
    escaped the name)."""
    with open(Path(path), "rb") as f:
        data = f.read(_MAX_SHA256_FILE)
    tokens = data.split()
    if not tokens:
        raise PolicyError(path, 1, "empty; expected a SHA-256 (64 hex characters, as sha256sum writes it)")
    token = tokens[0].removeprefix(b"\\").decode("ascii", "replace")
    return _expected_hex(token, path, 1)
