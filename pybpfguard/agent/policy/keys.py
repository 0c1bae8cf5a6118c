"""Ed25519 keys for signed bundles (docs/policy.md, "Signed bundles and keys"): the trust store, key pairs
and private key files.

The trust store is a directory (``PYBPFGUARD_KEYS_DIR``, else ``<config>/keys``) of ``*.pub`` files, each
holding one public key as 64 hex characters (RFC 8032's 32-byte encoding) and optionally a newline. Only
root can change what it trusts: the directory is created 0755 and must not be writable by group or other
(nor any directory above it by another user); a ``.pub`` file is used only when it is a regular file (not
a symlink), owned by root and not writable by group or other. Any other file is *refused*: listed with the
reason, never trusted. Files not named ``*.pub`` are ignored.

A private key file (``bpf keygen``) holds 128 hex characters, the 32-byte seed followed by the 32-byte
public key (the layout AegisBPF's keys use); the 64-hex form, the seed alone, is read too.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pybpfguard.agent.config import config_dir, env
from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.statefiles import write_atomic
from pybpfguard.agent.trust import require_private_dir

__all__ = [
    "KeyFileError",
    "TrustStore",
    "TrustedKey",
    "add_trusted_key",
    "keygen",
    "keys_dir",
    "load_private_key",
    "load_trust_store",
    "parse_public_key",
    "public_bytes",
]

_MAX_KEY_FILE = 4096  # a key file is 64 or 128 hex characters; anything far larger is not one
_HEX64 = re.compile(rb"[0-9a-fA-F]{64}")
_HEX128 = re.compile(rb"[0-9a-fA-F]{128}")


class KeyFileError(AgentError, ValueError):
    """A key file or the trust store was refused: ``.path`` and ``.reason``; prints ``<path>: <reason>``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (KeyFileError, (self.path, self.reason))


def keys_dir() -> Path:
    """The trust store: ``PYBPFGUARD_KEYS_DIR``, else ``<config>/keys``."""
    return Path(env("KEYS_DIR") or config_dir() / "keys")


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The 32-byte public key of *private_key*."""
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_public_key(data: bytes, path: str | os.PathLike[str]) -> bytes:
    """The 32 bytes of a public key file's content (64 hex characters, surrounding blanks allowed). Raises
    KeyFileError naming *path*."""
    text = data.strip()
    if not _HEX64.fullmatch(text):
        raise KeyFileError(path, f"expected an Ed25519 public key as 64 hex characters, found {len(text)} "
                                 f"characters ({text[:16]!r}...)")
    return bytes.fromhex(text.decode("ascii"))


@dataclass(frozen=True)
class TrustedKey:
    path: Path
    key: bytes  # 32 bytes


@dataclass(frozen=True)
class TrustStore:
    """What :func:`load_trust_store` found: ``keys`` trusted, ``refused`` (path, reason) not trusted."""

    directory: Path
    keys: list[TrustedKey]
    refused: list[tuple[Path, str]]

    def public_keys(self) -> list[bytes]:
        return [k.key for k in self.keys]


def load_trust_store(directory: Path | None = None) -> TrustStore:
    """Every ``*.pub`` file of the trust store, sorted by name, each trusted or refused with its reason
    (module docstring). A missing directory is an empty store. Raises UntrustedPathError when the directory
    could be changed by another user, OSError when it cannot be listed."""
    directory = keys_dir() if directory is None else directory
    try:
        require_private_dir(directory, create=False)
    except FileNotFoundError:
        return TrustStore(directory, [], [])
    keys: list[TrustedKey] = []
    refused: list[tuple[Path, str]] = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".pub"):
            continue
        path = directory / name
        try:
            keys.append(TrustedKey(path, _read_trusted(path)))
        except KeyFileError as err:
            refused.append((path, err.reason))
    return TrustStore(directory, keys, refused)


def _read_trusted(path: Path) -> bytes:
    """A trusted key file's key, read through one descriptor so the checks and the read see one file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if os.path.islink(path):  # O_NOFOLLOW's ELOOP
            raise KeyFileError(path, "a symlink; a trusted key must be a regular file") from None
        raise KeyFileError(path, f"cannot be read ({err.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(path, "not a regular file")
        if st.st_uid != 0:
            raise KeyFileError(path, f"owned by uid {st.st_uid}; a trusted key must be owned by root")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KeyFileError(path, f"writable by group or other (mode {stat.S_IMODE(st.st_mode):04o})")
        return parse_public_key(f.read(_MAX_KEY_FILE + 1), path)


def _make_store_dir(directory: Path) -> None:
    """Create the trust store (and missing parents) 0755, whatever the umask."""
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    for p in reversed(missing):
        os.mkdir(p, 0o755)
        os.chmod(p, 0o755)


def add_trusted_key(source: Path, directory: Path | None = None) -> tuple[Path, bool]:
    """Install the public key file *source* into the trust store as ``<dir>/<name>.pub`` (name: *source*'s
    without ``.pub``), root-owned, 0644. Returns (the trusted file, whether it was added); a key already
    trusted under any name is not added again. Raises KeyFileError (not root, a bad key, the name taken by
    another key), UntrustedPathError, OSError."""
    directory = keys_dir() if directory is None else directory
    if os.geteuid() != 0:
        raise KeyFileError(directory, "only root can add a trusted key (the trust store is root-owned)")
    with open(source, "rb") as f:
        key = parse_public_key(f.read(_MAX_KEY_FILE + 1), source)
    _make_store_dir(directory)
    require_private_dir(directory, create=False)
    store = load_trust_store(directory)
    for trusted in store.keys:
        if trusted.key == key:
            return trusted.path, False
    target = directory / (source.name.removesuffix(".pub") + ".pub")
    if os.path.lexists(target):
        raise KeyFileError(target, "exists and holds another key (or is refused); remove it or rename the "
                                   "file being added")
    write_atomic(target, key.hex().encode() + b"\n", mode=0o644)
    return target, True


def keygen(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new key pair: ``<prefix>.key`` (0600; 128 hex: seed then public key, newline) and
    ``<prefix>.pub`` (0644; 64 hex, newline). Never overwrites: raises FileExistsError naming the file when
    either exists, OSError otherwise. Returns (key file, public key file)."""
    key_path, pub_path = Path(f"{os.fspath(prefix)}.key"), Path(f"{os.fspath(prefix)}.pub")
    for path in (key_path, pub_path):
        if os.path.lexists(path):
            raise FileExistsError(f"{path}: exists; bpf keygen never overwrites a key")
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    public = public_bytes(private)
    _write_new(key_path, (seed + public).hex().encode() + b"\n", 0o600)
    try:
        _write_new(pub_path, public.hex().encode() + b"\n", 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, pub_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; the mode is part of the contract
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The signing key in *path*: 128 hex (seed, public key; the public half must be the seed's) or 64 hex
    (the seed). Raises KeyFileError naming the file, OSError when it cannot be read."""
    with open(path, "rb") as f:
        text = f.read(_MAX_KEY_FILE + 1).strip()
    if _HEX128.fullmatch(text):
        raw = bytes.fromhex(text.decode("ascii"))
        private = Ed25519PrivateKey.from_private_bytes(raw[:32])
        if public_bytes(private) != raw[32:]:
            raise KeyFileError(path, "the public key half (hex characters 65-128) is not the seed's public key; "
                                     "the file is damaged or not a bpf keygen key")
        return private
    if _HEX64.fullmatch(text):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text.decode("ascii")))
    raise KeyFileError(path, f"expected an Ed25519 private key as 128 hex characters (seed and public key) or "
                             f"64 (seed), found {len(text)} characters")
