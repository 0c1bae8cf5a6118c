"""``bpf keygen``, ``keys add|list``, ``policy sign`` and ``policy bundle-canonical`` through the command line,
with private config, keys and state directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pybpfguard.agent.policy.bundle import BundleFormat, parse_bundle, verify
from pybpfguard.agent.policy.keys import load_trust_store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (root-owned trust store)")
POLICY = b"version=1\n[deny_path]\n/etc/shadow\n"


@pytest.fixture
def env(tmp_path):
    out = {k: v for k, v in os.environ.items() if not k.startswith(("PYBPFGUARD_", "AEGIS_"))}
    return out | {"PYBPFGUARD_CONFIG_DIR": str(tmp_path / "cfg"), "PYBPFGUARD_KEYS_DIR": str(tmp_path / "keys"),
                  "PYBPFGUARD_STATE_DIR": str(tmp_path / "state")}


def _run(env, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "pybpfguard", *args], env=env, capture_output=True, text=True,
                         timeout=60)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def test_keygen_add_list_sign_and_dump(env, tmp_path):
    assert _run(env, "bpf", "keygen", "--out", str(tmp_path / "signer")).returncode == 0
    assert _run(env, "bpf", "keygen", "--out", str(tmp_path / "signer")).returncode == 1  # never overwrites
    listed = _run(env, "keys", "list")
    assert listed.returncode == 0 and listed.stdout == "" and "no trusted keys" in listed.stderr
    added = _run(env, "keys", "add", str(tmp_path / "signer.pub"))
    assert added.returncode == 0 and "added" in added.stdout
    pub = (tmp_path / "signer.pub").read_text().strip()
    assert _run(env, "keys", "list").stdout == f"{pub}  {tmp_path / 'keys' / 'signer.pub'}\n"
    policy = tmp_path / "p.conf"
    policy.write_bytes(POLICY)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "version_counter").write_text("41\n")
    for fmt in ("v1", "v2"):
        out = tmp_path / f"p.{fmt}"
        signed = _run(env, "policy", "sign", str(policy), "--key", str(tmp_path / "signer.key"), "--output",
                      str(out), f"--format={fmt}")
        assert signed.returncode == 0, signed.stderr
        bundle = parse_bundle(out.read_bytes(), str(out))
        assert bundle.format is BundleFormat[fmt.upper()] and bundle.policy == POLICY
        assert bundle.policy_version == 42 and bundle.expires == 0
        verify(bundle, [bytes.fromhex(pub)], counter=41, now=bundle.timestamp + 1.0)
        dump = _run(env, "policy", "bundle-canonical", str(out))
        assert dump.returncode == 0 and "policy_version: 42\n" in dump.stdout
        assert "signed_message: " in dump.stdout and f"signer_key: {pub}" in dump.stdout
    assert parse_bundle((tmp_path / "p.v2").read_bytes(), "b").format is BundleFormat.V2
    assert load_trust_store(tmp_path / "keys").refused == []


def test_sign_defaults_to_v2_and_refuses_a_bundle_or_a_bad_key(env, tmp_path):
    _run(env, "bpf", "keygen", "--out", str(tmp_path / "k"))
    policy = tmp_path / "p.conf"
    policy.write_bytes(POLICY)
    key = str(tmp_path / "k.key")
    assert _run(env, "policy", "sign", str(policy), "--key", key, "--output", str(tmp_path / "b")).returncode == 0
    bundle = parse_bundle((tmp_path / "b").read_bytes(), "b")
    assert bundle.format is BundleFormat.V2 and bundle.policy_version == 1
    again = _run(env, "policy", "sign", str(tmp_path / "b"), "--key", key, "--output", str(tmp_path / "bb"))
    assert again.returncode == 1 and "already a signed bundle" in again.stderr
    (tmp_path / "bad.key").write_text("nope\n")
    bad = _run(env, "policy", "sign", str(policy), "--key", str(tmp_path / "bad.key"), "--output", str(tmp_path / "x"))
    assert bad.returncode == 1 and "bad.key: expected an Ed25519 private key" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_sign_names_a_missing_key_file_plainly(env, tmp_path):
    (tmp_path / "p.conf").write_bytes(POLICY)
    out = _run(env, "policy", "sign", str(tmp_path / "p.conf"), "--key", str(tmp_path / "nokey"), "--output",
               str(tmp_path / "b"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"pybpfguard policy sign: {tmp_path / 'nokey'}: No such file or directory"


def test_sign_refuses_a_malformed_counter(env, tmp_path):
    _run(env, "bpf", "keygen", "--out", str(tmp_path / "k"))
    (tmp_path / "p.conf").write_bytes(POLICY)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "version_counter").write_text("many\n")
    out = _run(env, "policy", "sign", str(tmp_path / "p.conf"), "--key", str(tmp_path / "k.key"), "--output",
               str(tmp_path / "b"))
    assert out.returncode == 1 and "version_counter: line 1: the anti-rollback counter" in out.stderr


def test_keys_list_reports_refused_files_and_fails(env, tmp_path):
    _run(env, "bpf", "keygen", "--out", str(tmp_path / "k"))
    _run(env, "keys", "add", str(tmp_path / "k.pub"))
    (tmp_path / "keys" / "evil.pub").symlink_to(tmp_path / "k.pub")
    out = _run(env, "keys", "list")
    assert out.returncode == 1 and out.stdout.count("\n") == 1
    assert "refused" in out.stderr and "evil.pub" in out.stderr and "symlink" in out.stderr


@pytest.mark.parametrize("args", [["keys", "add", "/nonexistent.pub"], ["keys", "add", "/etc/hostname"],
                                  ["policy", "bundle-canonical", "/etc/hostname"],
                                  ["bpf", "keygen", "--out", "/nonexistent/dir/k"]], ids=" ".join)
def test_bad_input_fails_with_one_clear_line(env, args):
    out = _run(env, *args)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr


def test_bpf_sign_is_not_applicable(env):
    out = _run(env, "bpf", "sign", "anything")
    assert out.returncode == 2 and "not applicable" in out.stderr


def test_keys_dir_defaults_to_the_config_dir(env, tmp_path):
    del env["PYBPFGUARD_KEYS_DIR"]
    _run(env, "bpf", "keygen", "--out", str(tmp_path / "k"))
    assert _run(env, "keys", "add", str(tmp_path / "k.pub")).returncode == 0
    assert Path(tmp_path / "cfg" / "keys" / "k.pub").exists()
