"""LOADER case 5: per-CPU values are sized by the *possible* CPUs, parsed from the kernel's cpulist."""

import pytest

from pybpfguard.bpf.cpus import CpuListError, parse_cpu_list, possible_cpu_ids, possible_cpus
from pybpfguard.bpf.layout import Scalar
from pybpfguard.bpf.maps.encoding import ElemCodec, PerCpuCodec


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("0", (0,)),
        ("0\n", (0,)),
        ("0-3\n", (0, 1, 2, 3)),
        ("0,2-3\n", (0, 2, 3)),
        ("0-1,4,6-7", (0, 1, 4, 6, 7)),
    ],
)
def test_cpulist_parser_reads_single_ids_ranges_and_trailing_newline(text, ids):
    assert parse_cpu_list(text) == ids


def test_fake_possible_file_with_0_319_gives_320_cpus_with_no_fixed_cap(tmp_path):
    fake = tmp_path / "possible"
    fake.write_text("0-319\n")
    assert possible_cpus(fake) == 320
    assert possible_cpu_ids(fake)[-1] == 319


def test_percpu_value_buffer_for_320_cpus_rounds_each_slot_up_to_8_bytes(tmp_path):
    fake = tmp_path / "possible"
    fake.write_text("0-319\n")
    codec = PerCpuCodec(ElemCodec(4, Scalar("u32"), "map 'x' value"), possible_cpus(fake))
    raw = codec.encode(7)
    assert codec.stride == 8 and len(raw) == 320 * 8
    assert codec.decode(raw) == [7] * 320


def test_cpulist_with_holes_counts_only_possible_cpus(tmp_path):
    fake = tmp_path / "possible"
    fake.write_text("0,2-3\n")
    assert possible_cpus(fake) == 3  # num_possible_cpus(), what for_each_possible_cpu copies


@pytest.mark.parametrize("text", ["", "\n", "a", "3-1", "0-", "-2"])
def test_malformed_cpulist_raises_naming_the_text(text):
    with pytest.raises(CpuListError, match="cpulist"):
        parse_cpu_list(text)


def test_host_possible_cpus_is_at_least_the_online_count():
    import os

    assert possible_cpus() >= len(os.sched_getaffinity(0))
