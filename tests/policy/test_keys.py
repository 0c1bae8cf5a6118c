"""Keys, the trust store, the anti-rollback counter and the checks ``policy apply`` makes before parsing
(pybpfguard/agent/policy/keys.py, counter.py, integrity.py; open_policy in bundle.py). All under tmp_path."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pybpfguard.agent.policy.bundle import BundleFormat, BundleRejected, Check, commit_version, open_policy, sign_bundle
from pybpfguard.agent.policy.counter import read_counter, write_counter
from pybpfguard.agent.policy.keys import (
    KeyFileError,
    add_trusted_key,
    keygen,
    load_private_key,
    load_trust_store,
    public_bytes,
)
from pybpfguard.agent.policy.model import PolicyError
from pybpfguard.agent.trust import UntrustedPathError

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (root-owned trust store, chown)")
NOBODY = 65534
POLICY = b"version=1\n[deny_path]\n/etc/shadow\n"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Private config, keys and state directories, named by the environment as the CLI reads them."""
    monkeypatch.setenv("PYBPFGUARD_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("PYBPFGUARD_KEYS_DIR", str(tmp_path / "cfg" / "keys"))
    monkeypatch.setenv("PYBPFGUARD_STATE_DIR", str(tmp_path / "state"))
    for name in ("POLICY_SHA256", "POLICY_SHA256_FILE", "VERSION_COUNTER_PATH"):
        monkeypatch.delenv(f"PYBPFGUARD_{name}", raising=False)
        monkeypatch.delenv(f"AEGIS_{name}", raising=False)
    return tmp_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- keygen and private keys

@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_keygen_writes_a_private_0600_key_and_a_0644_public_key_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        key_path, pub_path = keygen(tmp_path / "signer")
    finally:
        os.umask(old)
    assert (key_path.name, pub_path.name) == ("signer.key", "signer.pub")
    assert (_mode(key_path), _mode(pub_path)) == (0o600, 0o644)
    key_text, pub_text = key_path.read_text(), pub_path.read_text()
    assert len(key_text) == 129 and len(pub_text) == 65 and key_text.endswith("\n") and pub_text.endswith("\n")
    assert key_text[64:128] == pub_text[:64]
    assert public_bytes(load_private_key(key_path)).hex() == pub_text.strip()


def test_keygen_never_overwrites(tmp_path):
    (tmp_path / "k.pub").write_text("old")
    with pytest.raises(FileExistsError, match=r"k.pub"):
        keygen(tmp_path / "k")
    assert not (tmp_path / "k.key").exists() and (tmp_path / "k.pub").read_text() == "old"
    keygen(tmp_path / "j")
    before = (tmp_path / "j.key").read_bytes()
    with pytest.raises(FileExistsError, match=r"j.key"):
        keygen(tmp_path / "j")
    assert (tmp_path / "j.key").read_bytes() == before


def test_a_private_key_is_read_in_its_128_and_its_64_hex_forms_and_checked(tmp_path):
    key_path, _ = keygen(tmp_path / "k")
    full = key_path.read_text().strip()
    (tmp_path / "seed").write_text(full[:64].upper() + "\n")
    assert public_bytes(load_private_key(tmp_path / "seed")) == bytes.fromhex(full[64:])
    other = public_bytes(Ed25519PrivateKey.generate()).hex()
    (tmp_path / "mismatch").write_text(full[:64] + other)
    with pytest.raises(KeyFileError, match="mismatch: the public key half"):
        load_private_key(tmp_path / "mismatch")
    for text in ("", full[:100], full + "00", "x" * 128):
        (tmp_path / "bad").write_text(text)
        with pytest.raises(KeyFileError, match="bad: expected an Ed25519 private key"):
            load_private_key(tmp_path / "bad")


# --- the trust store

@root_only
def test_keys_add_installs_a_root_owned_0644_key_in_a_0755_directory(dirs):
    _, pub = keygen(dirs / "signer")
    path, added = add_trusted_key(pub)
    store_dir = dirs / "cfg" / "keys"
    assert added and path == store_dir / "signer.pub"
    assert (_mode(store_dir), _mode(path), os.stat(path).st_uid) == (0o755, 0o644, 0)
    store = load_trust_store()
    assert [k.key.hex() for k in store.keys] == [pub.read_text().strip()] and store.refused == []
    assert add_trusted_key(pub) == (path, False)  # already trusted: nothing added


@root_only
def test_keys_add_refuses_a_bad_key_and_a_name_another_key_holds(dirs):
    (dirs / "bad.pub").write_text("not a key\n")
    with pytest.raises(KeyFileError, match=r"bad.pub: expected an Ed25519 public key as 64 hex"):
        add_trusted_key(dirs / "bad.pub")
    _, first = keygen(dirs / "a")
    add_trusted_key(first)
    (dirs / "other").mkdir()
    _, second = keygen(dirs / "other" / "a")
    with pytest.raises(KeyFileError, match=r"a.pub: exists and holds another key"):
        add_trusted_key(second)
    assert len(load_trust_store().keys) == 1


@root_only
def test_the_store_refuses_symlinks_foreign_owned_and_writable_key_files(dirs):
    keys = []
    for name in ("good", "link", "nobody", "writable", "garbage"):
        _, pub = keygen(dirs / name)
        keys.append(pub)
    add_trusted_key(keys[0])
    store_dir = dirs / "cfg" / "keys"
    (store_dir / "link.pub").symlink_to(keys[1])
    foreign = store_dir / "nobody.pub"
    foreign.write_bytes(keys[2].read_bytes())
    os.chown(foreign, NOBODY, NOBODY)
    writable = store_dir / "writable.pub"
    writable.write_bytes(keys[3].read_bytes())
    writable.chmod(0o666)
    (store_dir / "garbage.pub").write_text("zz\n")
    (store_dir / "notes.txt").write_text("ignored: not a .pub file\n")
    store = load_trust_store()
    assert [k.path.name for k in store.keys] == ["good.pub"]
    refused = {p.name: reason for p, reason in store.refused}
    assert set(refused) == {"link.pub", "nobody.pub", "writable.pub", "garbage.pub"}
    assert "symlink" in refused["link.pub"]
    assert f"owned by uid {NOBODY}" in refused["nobody.pub"]
    assert "writable by group or other" in refused["writable.pub"]
    assert "64 hex" in refused["garbage.pub"]


@root_only
def test_a_trust_store_directory_another_user_can_change_is_refused(dirs):
    _, pub = keygen(dirs / "k")
    add_trusted_key(pub)
    store_dir = dirs / "cfg" / "keys"
    store_dir.chmod(0o777)
    with pytest.raises(UntrustedPathError, match="writable by group or other"):
        load_trust_store()
    store_dir.chmod(0o755)
    os.chown(store_dir, NOBODY, NOBODY)
    with pytest.raises(UntrustedPathError, match=f"owned by uid {NOBODY}"):
        load_trust_store()
    with pytest.raises(UntrustedPathError):
        add_trusted_key(pub)


def test_a_missing_trust_store_is_empty(dirs):
    store = load_trust_store()
    assert store.keys == [] and store.refused == [] and store.directory == dirs / "cfg" / "keys"


# --- the anti-rollback counter

def test_the_counter_reads_0_when_missing_and_is_written_atomically_as_decimal_and_newline(dirs):
    assert read_counter() == 0
    write_counter(41)
    path = dirs / "state" / "version_counter"
    assert path.read_bytes() == b"41\n" and read_counter() == 41
    assert [p.name for p in path.parent.iterdir()] == ["version_counter"]  # no temporary file left
    with pytest.raises(ValueError):
        write_counter(-1)


@pytest.mark.parametrize("content", [b"", b"abc\n", b"-1\n", b"1.5\n", b"18446744073709551616\n", b"12 13\n"])
def test_a_malformed_counter_is_an_error_naming_the_file_never_0(dirs, content):
    write_counter(1)
    path = dirs / "state" / "version_counter"
    path.write_bytes(content)
    with pytest.raises(PolicyError, match=f"^{path}: line 1: the anti-rollback counter must be a decimal"):
        read_counter()


def test_the_counter_path_can_be_overridden(dirs, monkeypatch):
    monkeypatch.setenv("PYBPFGUARD_VERSION_COUNTER_PATH", str(dirs / "elsewhere" / "vc"))
    write_counter(3)
    assert (dirs / "elsewhere" / "vc").read_bytes() == b"3\n" and read_counter() == 3


# --- open_policy: integrity, signature, counter

def _open(data: bytes, **kw):  # type: ignore[no-untyped-def]
    args = {"require_signature": False, "sha256": None, "sha256_file": None, "now": 1_780_000_100.0} | kw
    return open_policy(data, "p.conf", **args)


def test_a_plain_policy_is_returned_as_is_unless_a_signature_is_required(dirs):
    opened = _open(POLICY)
    assert opened.text == POLICY and opened.bundle is None
    commit_version(opened)
    assert not (dirs / "state" / "version_counter").exists()
    with pytest.raises(PolicyError, match=r"^p.conf: not a signed bundle"):
        _open(POLICY, require_signature=True)


def test_sha256_of_the_whole_file_is_compared_in_any_case(dirs):
    digest = hashlib.sha256(POLICY).hexdigest()
    assert _open(POLICY, sha256=digest.upper()).text == POLICY
    with pytest.raises(PolicyError, match=r"^p.conf: SHA-256 mismatch: --sha256 expects 0{64}, the file's is"):
        _open(POLICY, sha256="0" * 64)
    with pytest.raises(PolicyError, match=r"^--sha256: expected a SHA-256 as 64 hex"):
        _open(POLICY, sha256="abc")


def test_sha256_file_takes_the_first_token_of_sha256sum_output(dirs):
    digest = hashlib.sha256(POLICY).hexdigest()
    for content in (f"{digest}  p.conf\n", f"\\{digest}  p\\\\conf\n", f"{digest}\n"):
        (dirs / "sum").write_text(content)
        assert _open(POLICY, sha256_file=str(dirs / "sum")).text == POLICY
    (dirs / "sum").write_text(f"{'1' * 64}  p.conf\n")
    with pytest.raises(PolicyError, match=f"--sha256-file {dirs / 'sum'} expects 1{{64}}"):
        _open(POLICY, sha256_file=str(dirs / "sum"))
    (dirs / "sum").write_text("\n")
    with pytest.raises(PolicyError, match="sum: line 1: empty"):
        _open(POLICY, sha256_file=str(dirs / "sum"))
    with pytest.raises(OSError):
        _open(POLICY, sha256_file=str(dirs / "missing"))


def test_the_environment_names_the_hash_when_no_option_does(dirs, monkeypatch):
    digest = hashlib.sha256(POLICY).hexdigest()
    monkeypatch.setenv("AEGIS_POLICY_SHA256", "0" * 64)
    with pytest.raises(PolicyError, match="PYBPFGUARD_POLICY_SHA256 expects"):
        _open(POLICY)
    assert _open(POLICY, sha256=digest).text == POLICY  # an option overrides the environment
    monkeypatch.setenv("PYBPFGUARD_POLICY_SHA256", digest)
    (dirs / "sum").write_text("f" * 64)
    monkeypatch.setenv("PYBPFGUARD_POLICY_SHA256_FILE", str(dirs / "sum"))
    with pytest.raises(PolicyError, match="PYBPFGUARD_POLICY_SHA256_FILE"):
        _open(POLICY)  # every hash named is checked


@root_only
@pytest.mark.parametrize("fmt", list(BundleFormat), ids=lambda f: f.name)
def test_a_signed_bundle_opens_against_the_trust_store_and_the_counter(dirs, fmt):
    key_path, pub = keygen(dirs / "k")
    add_trusted_key(pub)
    key = load_private_key(key_path)
    bundle3 = sign_bundle(POLICY, key, policy_version=3, timestamp=1, fmt=fmt)
    opened = _open(bundle3, require_signature=True)
    assert opened.text == POLICY and opened.bundle is not None and opened.bundle.policy_version == 3
    commit_version(opened)
    assert (dirs / "state" / "version_counter").read_bytes() == b"3\n"
    with pytest.raises(BundleRejected, match="stale policy_version 3") as info:
        _open(bundle3)  # replayed
    assert info.value.check is Check.POLICY_VERSION
    older = sign_bundle(POLICY, key, policy_version=2, timestamp=2, fmt=fmt)
    with pytest.raises(BundleRejected, match="stale policy_version 2"):
        _open(older)
    write_counter(7)
    commit_version(opened)  # a later apply raised the counter meanwhile: never lowered
    assert read_counter() == 7


@root_only
def test_an_untrusted_signer_is_refused_naming_the_store_and_the_files_it_refused(dirs):
    _, pub = keygen(dirs / "trusted")
    add_trusted_key(pub)
    stranger = Ed25519PrivateKey.generate()
    (dirs / "cfg" / "keys" / "stranger.pub").write_text(public_bytes(stranger).hex())
    os.chown(dirs / "cfg" / "keys" / "stranger.pub", NOBODY, NOBODY)
    data = sign_bundle(POLICY, stranger, policy_version=1, timestamp=1)
    with pytest.raises(BundleRejected) as info:
        _open(data)
    err = info.value
    assert err.check is Check.TRUSTED_KEY and err.line == 6
    assert "1 trusted key(s) in" in err.reason and f"stranger.pub: owned by uid {NOBODY}" in err.reason


def test_with_no_trust_store_every_bundle_is_refused(dirs):
    data = sign_bundle(POLICY, Ed25519PrivateKey.generate(), policy_version=1, timestamp=1)
    with pytest.raises(BundleRejected, match=r"not a trusted key \(0 trusted key\(s\)"):
        _open(data)


@root_only
def test_a_malformed_counter_stops_a_bundle_and_its_commit(dirs):
    key_path, pub = keygen(dirs / "k")
    add_trusted_key(pub)
    opened = _open(sign_bundle(POLICY, load_private_key(key_path), policy_version=5, timestamp=1))
    (dirs / "state").mkdir(mode=0o700)
    (dirs / "state" / "version_counter").write_text("garbage\n")
    with pytest.raises(PolicyError, match="version_counter: line 1"):
        _open(sign_bundle(POLICY, load_private_key(key_path), policy_version=6, timestamp=1))
    with pytest.raises(PolicyError, match="version_counter: line 1"):
        commit_version(opened)
