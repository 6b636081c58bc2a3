"""rtvc.sysinfo: the machine line and the hypervisor's steal share."""

import pytest

from rtvc.sysinfo import cpu_times, machine_description, steal_share

STAT = """cpu  3604242 1517241 294008 3443865 6729 0 43408 175534 0 0
cpu0 1811925 748003 147710 1723043 4073 0 20024 85631 0 0
intr 1 2 3
"""


def test_cpu_times_sums_the_first_eight_fields_of_the_cpu_line():
    total, steal = cpu_times(STAT)
    assert total == 3604242 + 1517241 + 294008 + 3443865 + 6729 + 0 + 43408 + 175534
    assert steal == 175534


def test_cpu_times_without_a_cpu_line_or_with_an_old_kernel():
    assert cpu_times("intr 1 2\n") is None
    assert cpu_times("cpu  10 0 5 85\n") == (100, 0)  # before steal was counted


def test_steal_share_is_the_stolen_part_of_the_elapsed_time():
    assert steal_share((1000, 10), (1400, 110)) == pytest.approx(0.25)
    assert steal_share(None, (1, 1)) is None and steal_share((5, 0), (5, 0)) is None


def test_this_machine_is_described_and_its_counters_read():
    assert "logical cores" in machine_description()
    t = cpu_times()
    if t is not None:  # Linux
        assert t[0] > 0 and 0 <= t[1] <= t[0]
