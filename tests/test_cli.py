import subprocess
import sys

from pybpfguard import __version__
from pybpfguard.cli import _split_globals


def test_global_log_options_are_accepted_anywhere_in_argv():
    found, rest = _split_globals(["block", "--log-level=debug", "list", "--log-format", "json"])
    assert found == {"log_level": "debug", "log_format": "json"}
    assert rest == ["block", "list"]


def test_python_m_version_prints_pybpfguard_and_the_package_version():
    out = subprocess.run([sys.executable, "-m", "pybpfguard", "version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout == f"pybpfguard {__version__}\n"


def test_dash_capital_v_prints_the_version():
    out = subprocess.run([sys.executable, "-m", "pybpfguard", "-V"], capture_output=True, text=True)
    assert out.stdout.strip() == f"pybpfguard {__version__}"
