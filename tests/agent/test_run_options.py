import argparse

import pytest

from pybpfguard.agent.events.sinks import LogTarget
from pybpfguard.agent.options import EnforceSignal, UsageError, parse_signal, round_ringbuf
from pybpfguard.cli import run as run_cli


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_defaults_to_audit_with_term_signal_and_stdout():
    opts = run_cli.options_from_args(_parse())
    assert not opts.enforce and opts.enforce_signal is EnforceSignal.TERM and opts.log == {LogTarget.STDOUT}


@pytest.mark.parametrize(("word", "sig"), [("block", EnforceSignal.NONE), ("sigterm", EnforceSignal.TERM),
                                           ("9", EnforceSignal.KILL), ("2", EnforceSignal.INT)])
def test_enforce_signal_accepts_aliases_and_numbers(word, sig):
    assert parse_signal(word) is sig


def test_kill_without_allow_sigkill_is_a_usage_error():
    with pytest.raises(UsageError, match="--allow-sigkill"):
        run_cli.options_from_args(_parse("--enforce", "--enforce-signal=kill"))
    assert run_cli.options_from_args(_parse("--enforce-signal=kill", "--allow-sigkill")).enforce_signal.action == "KILL"


def test_ringbuf_size_rounds_up_to_a_power_of_two_of_at_least_a_page():
    assert round_ringbuf(1) == 4096 and round_ringbuf(5000) == 8192 and round_ringbuf(1 << 24) == 1 << 24
