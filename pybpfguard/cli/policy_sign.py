"""``policy sign`` and ``policy bundle-canonical`` (docs/policy.md, "Signed bundles and keys")."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import time
from pathlib import Path

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.policy.bundle import BundleFormat, is_bundle, parse_bundle, sign_bundle, signed_message
from pybpfguard.agent.policy.counter import read_counter
from pybpfguard.agent.policy.keys import load_private_key

_FORMATS = {"v1": BundleFormat.V1, "v2": BundleFormat.V2}
_PARSER = "pybpfguard.agent.policy.parse"


def _check_parses(text: bytes, source: str) -> None:
    """Refuse to sign a policy ``policy apply`` would refuse to parse (when this build has the parser)."""
    if importlib.util.find_spec(_PARSER) is None:
        return
    importlib.import_module(_PARSER).parse_policy(text, source)


def sign(args: argparse.Namespace) -> int:
    """Write ``args.output``: ``args.file`` signed with ``args.key`` in ``args.format`` (v1 or v2), with
    ``policy_version`` one above this host's counter, ``timestamp`` now and ``expires`` 0."""
    command = f"{args.prog} policy sign"
    try:
        text = Path(args.file).read_bytes()
        if is_bundle(text):
            print(f"{command}: {args.file}: already a signed bundle; sign the policy inside it", file=sys.stderr)
            return 1
        _check_parses(text, args.file)
        key = load_private_key(args.key)
        version = read_counter() + 1
        data = sign_bundle(text, key, policy_version=version, timestamp=int(time.time()), expires=0,
                           fmt=_FORMATS[args.format])
        Path(args.output).write_bytes(data)
    except OSError as err:
        print(f"{command}: {f'{err.filename}: {err.strerror}' if err.filename and err.strerror else err}",
              file=sys.stderr)
        return 1
    except (AgentError, ValueError) as err:
        print(f"{command}: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {_FORMATS[args.format].magic}, policy_version {version}")
    return 0


def bundle_canonical(args: argparse.Namespace) -> int:
    """Debug dump of ``args.file``: the header fields, the policy's size and hash, and the signed message
    (newlines shown as ``\\n``). Not a stable format."""
    try:
        bundle = parse_bundle(Path(args.file).read_bytes(), args.file)
    except (AgentError, OSError) as err:
        print(f"{args.prog} policy bundle-canonical: {err}", file=sys.stderr)
        return 1
    message = signed_message(bundle).decode("ascii")
    print(f"format: {bundle.format.name} ({bundle.format.magic})")
    print(f"format_version: {bundle.format.number}")
    for name in ("policy_version", "timestamp", "expires"):
        print(f"{name}: {getattr(bundle, name)}")
    print(f"signer_key: {bundle.signer_key.hex()}")
    print(f"signature: {bundle.signature.hex()}")
    print(f"policy_sha256: {bundle.policy_sha256}")
    print(f"policy_bytes: {len(bundle.policy)}")
    print(f"policy_sha256_computed: {hashlib.sha256(bundle.policy).hexdigest()}")
    print(f"signed_message: {message.replace(chr(10), chr(92) + 'n')}")
    return 0
