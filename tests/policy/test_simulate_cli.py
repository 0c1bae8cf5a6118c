"""``simulate`` and ``policy event-canonical`` through the command line (subprocess): counts, per-event
output, stdin, bad lines counted and never a traceback, missing files a clear exit 1."""

from __future__ import annotations

import json

import pytest

from pybpfguard.agent.events.records import BLOCK, ActionCode
from tests.policy import replay_events
from tests.policy.replay_events import block_event, cli, lines, net_event, stat_key

env, world = replay_events.env, replay_events.world  # the shared fixtures

EXPECTED = {"would_block": 4, "would_block_inode": 1, "would_block_path": 1, "would_block_comm": 0,
            "would_block_net": 2, "would_allow": 1, "no_match": 2, "skipped_non_block": 1, "skipped_invalid": 2}


def test_counts_as_text_and_json(world, env) -> None:  # type: ignore[no-untyped-def]
    out = cli("simulate", str(world["events"]), "--policy", str(world["policy"]), env=env)
    assert out.returncode == 0, out.stderr
    assert dict((k, int(v)) for k, v in (line.split() for line in out.stdout.splitlines())) == EXPECTED
    assert "line 4: [deny_path] /nonexistent/pybpfguard/gone does not resolve" in out.stderr  # a warning only
    assert "notice: line 7: [deny_cidr] is not enforced by this release" in out.stderr
    out = cli("simulate", str(world["events"]), "--policy", str(world["policy"]), "--json", env=env)
    doc = json.loads(out.stdout)
    assert doc.pop("policy") == str(world["policy"]) and doc == EXPECTED


def test_per_event_and_stdin(world, env) -> None:  # type: ignore[no-untyped-def]
    out = cli("simulate", "-", "--policy", str(world["policy"]), "--per-event", "--json", env=env,
              stdin=world["events"].read_bytes())
    doc = json.loads(out.stdout)
    by_line = {e["line"]: e for e in doc["events"]}
    assert by_line[1] == {"line": 1, "type": "block", "outcome": "would_block_inode",
                          "rule": f"[deny_path] {world['denied']} (line 3)"}
    assert by_line[2]["outcome"] == "would_allow" and by_line[2]["reason"] == "allow_cgroup"
    assert by_line[5]["rule"] == "[deny_cidr] 10.0.0.0/8 (line 8)"
    assert by_line[8]["outcome"] == "skipped_invalid" and 10 not in by_line  # blank lines are no events
    text = cli("simulate", str(world["events"]), "--policy", str(world["policy"]), "--per-event", env=env).stdout
    assert text.splitlines()[0] == f"line 1: would_block_inode block [deny_path] {world['denied']} (line 3)"
    assert "would_block 4" in text.splitlines()


def test_bad_input_is_counted_never_a_traceback(world, env) -> None:  # type: ignore[no-untyped-def]
    junk = b"\xff\xfe\n" + b"{" * 5000 + b"\n" + b'{"type":"block"}\n' + b'{"type":"net_connect_block"}\n' + b"null\n"
    out = cli("simulate", "-", "--policy", str(world["policy"]), "--json", env=env, stdin=junk)
    assert out.returncode == 0 and json.loads(out.stdout)["skipped_invalid"] == 5
    empty = cli("simulate", "-", "--policy", str(world["policy"]), "--json", env=env)
    assert json.loads(empty.stdout)["would_block"] == 0


@pytest.mark.parametrize("which", ["events", "policy"])
def test_a_missing_file_is_exit_1_naming_it(world, env, which) -> None:  # type: ignore[no-untyped-def]
    files = {"events": str(world["events"]), "policy": str(world["policy"])}
    files[which] = "/nonexistent/pybpfguard/x"
    out = cli("simulate", files["events"], "--policy", files["policy"], env=env)
    assert out.returncode == 1 and not out.stdout
    assert f"cannot read {which} /nonexistent/pybpfguard/x: No such file or directory" in out.stderr


def test_missing_policy_file_is_exit_1(env) -> None:  # type: ignore[no-untyped-def]
    out = cli("simulate", "/nonexistent.jsonl", "--policy", "/nonexistent.conf", env=env)
    assert out.returncode == 1 and "cannot read policy /nonexistent.conf" in out.stderr


def test_a_policy_error_names_file_and_line(world, env) -> None:  # type: ignore[no-untyped-def]
    bad = world["tmp"] / "bad.conf"
    bad.write_text("version=1\n[deny_ip]\nexample.com\n")
    out = cli("simulate", str(world["events"]), "--policy", str(bad), env=env)
    assert out.returncode == 1 and f"{bad}: line 3:" in out.stderr


def test_usage_errors(env) -> None:  # type: ignore[no-untyped-def]
    assert cli("simulate", "-", env=env).returncode == 2  # --policy is required
    assert cli("simulate", env=env).returncode == 2


# --- policy event-canonical ----------------------------------------------------------------------------------


def test_event_canonical_reencodes_json_events_in_the_agents_order(tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    ev = block_event(7, 8, path=b"/tmp/x")
    canonical = lines(ev)
    shuffled = json.loads(canonical)
    pretty = json.dumps(dict(reversed(list(shuffled.items()))), indent=2)
    src = tmp_path / "ev.json"
    src.write_text(pretty)
    out = cli("policy", "event-canonical", str(src), env=env)
    assert out.returncode == 0 and out.stdout.encode() == canonical
    both = lines(ev, net_event("connect", "10.0.0.1", 443))
    out = cli("policy", "event-canonical", "-", env=env, stdin=both)
    assert out.stdout.encode() == both


def test_event_canonical_decodes_a_raw_record(tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    rec = BLOCK.pack(pid=4242, ppid=4000, start_time=123, parent_start_time=10, cgid=1, comm=b"cat", ino=99,
                     dev=271581186, action=ActionCode.BLOCK, path=b"/tmp/f")
    src = tmp_path / "rec.bin"
    src.write_bytes(rec)
    out = cli("policy", "event-canonical", str(src), env=env)
    assert out.returncode == 0
    obj = json.loads(out.stdout)
    assert (obj["type"], obj["ino"], obj["path"], obj["action"]) == ("block", 99, "/tmp/f", "BLOCK")


@pytest.mark.parametrize("content", [b"", b"{}", b'{"type":"block"}', b'{"type":"nope"}', b"\x02\x00\x00\x00",
                                     b"\x63\x00\x00\x00" + bytes(400), b"[1]", b"{\n"])
def test_event_canonical_bad_input_is_exit_1(tmp_path, env, content) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "bad"
    src.write_bytes(content)
    out = cli("policy", "event-canonical", str(src), env=env)
    assert out.returncode == 1 and str(src) in out.stderr and not out.stdout


def test_span_logs_name_the_command_and_the_parse(world, env) -> None:  # type: ignore[no-untyped-def]
    out = cli("--log-format=json", "simulate", str(world["events"]), "--policy", str(world["policy"]),
              env=dict(env, PYBPFGUARD_OTEL_SPANS="1"))
    spans = [json.loads(line) for line in out.stderr.splitlines() if '"otel_span_' in line]
    starts = {s["span_name"]: s for s in spans if s["message"] == "otel_span_start"}
    assert set(starts) == {"cli.simulate", "policy.parse"}
    assert starts["policy.parse"]["parent_span_id"] == starts["cli.simulate"]["span_id"]
    assert all(s["status"] == "ok" for s in spans if s["message"] == "otel_span_end")


def test_a_binary_hash_rule_is_simulated_on_the_events_file(tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    tools = tmp_path / "tools"
    tools.mkdir()
    miner, fine = tools / "miner", tools / "fine"
    miner.write_bytes(b"mine mine mine")
    fine.write_bytes(b"harmless")
    policy = tmp_path / "hash.conf"
    policy.write_text(f"version=3\n[deny_binary_hash]\nsha256:{hashlib.sha256(b'mine mine mine').hexdigest()}\n"
                      f"[scan_paths]\n{tools}\n")
    events = lines(block_event(*stat_key(miner), path=bytes(miner)), block_event(*stat_key(fine), path=bytes(fine)))
    out = cli("simulate", "-", "--policy", str(policy), "--json", env=env, stdin=events)
    doc = json.loads(out.stdout)
    assert (doc["would_block_inode"], doc["no_match"]) == (1, 1), out.stderr
